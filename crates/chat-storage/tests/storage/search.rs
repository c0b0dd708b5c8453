//! Search through the blind index, on both backends through
//! `conformance_suite!`: what is found, what changes make unfindable, the
//! rebuilt index against the live one, and what the index stores.

use chat_crypto::{SearchKey, SearchKeys};
use chat_domain::search::SearchQuery;
use chat_domain::{MessageBody, MessageId, RoomId, RoomName, Seq, Visibility};
use chat_storage::{MessageOp, NewChange, Room, SearchIndexState, Store, User};

use crate::support::{AppendOk, TestDb, message, search_keys};

conformance_suite!(
    words_are_found_whatever_their_case_and_accents_and_only_whole,
    a_trailing_star_finds_words_by_their_start,
    only_the_rooms_asked_for_are_searched,
    an_index_entry_pointing_into_another_room_opens_nothing,
    an_edit_is_found_by_its_new_text_only_and_a_deletion_by_none,
    results_come_newest_first_a_page_at_a_time_each_once,
    a_word_found_by_its_prefix_fills_a_page_past_the_words_sharing_it,
    messages_far_apart_are_found_newest_first_however_many_lie_between,
    a_rebuilt_index_answers_as_the_live_one_under_the_same_key_or_a_new_one,
    the_index_stores_no_word_readably,
    an_empty_database_has_a_complete_index_and_a_filled_one_needs_reindex,
    an_erased_account_and_a_deleted_room_leave_no_index_entries,
);

/// The texts `query` finds in `rooms`, newest first, all pages.
async fn found(store: &Store, rooms: &[RoomId], query: &str) -> Vec<String> {
    let query = SearchQuery::parse(query).expect("valid query");
    let mut texts = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .search(rooms, &query, before, 3)
            .await
            .expect("search");
        texts.extend(
            page.hits
                .into_iter()
                .map(|hit| hit.message.content.expect("a found message has text")),
        );
        match page.next {
            Some(next) => before = Some(next),
            None => return texts,
        }
    }
}

async fn post(db: &TestDb, room: &Room, user: &User, text: &str) -> Seq {
    db.store
        .append_ok(vec![message(room.id, user, text, None)])
        .await
        .expect("append")[0]
        .message
        .seq
}

async fn workshop(db: &TestDb, owner: &User) -> Room {
    db.store
        .create_room(
            &RoomName::public("workshop").expect("name"),
            owner.id,
            Visibility::Public,
            None,
            false,
        )
        .await
        .expect("create room")
}

fn change(room: &Room, target: Seq, user: &User, op: MessageOp) -> NewChange {
    NewChange {
        room_id: room.id,
        target,
        user_id: user.id,
        username: user.username.clone(),
        op,
        client_id: None,
    }
}

async fn words_are_found_whatever_their_case_and_accents_and_only_whole(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    post(db, &general, &alice, "Lunch at the Café on Friday?").await;
    post(db, &general, &alice, "the cafeteria is closed").await;
    post(db, &general, &alice, "CAFE NOIR, s'il vous plaît").await;
    let rooms = [general.id];

    assert_eq!(
        found(&db.store, &rooms, "cafe").await,
        ["CAFE NOIR, s'il vous plaît", "Lunch at the Café on Friday?"]
    );
    assert_eq!(
        found(&db.store, &rooms, "Café friday").await,
        ["Lunch at the Café on Friday?"]
    );
    assert_eq!(
        found(&db.store, &rooms, "PLAIT").await,
        ["CAFE NOIR, s'il vous plaît"]
    );
    assert!(found(&db.store, &rooms, "caf").await.is_empty());
    assert!(found(&db.store, &rooms, "cafe monday").await.is_empty());
    assert!(found(&db.store, &rooms, "nowhere").await.is_empty());

    // Where the words are, in characters of the text.
    let query = SearchQuery::parse("friday").expect("query");
    let page = db
        .store
        .search(&rooms, &query, None, 10)
        .await
        .expect("search");
    let hit = &page.hits[0];
    let text: Vec<char> = hit
        .message
        .content
        .as_deref()
        .expect("text")
        .chars()
        .collect();
    let words: Vec<String> = hit
        .highlights
        .iter()
        .map(|h| text[h.start..h.end].iter().collect())
        .collect();
    assert_eq!(words, ["Friday"]);
    assert_eq!(hit.message.username.as_str(), "alice");
    assert_eq!(page.next, None);
}

async fn a_trailing_star_finds_words_by_their_start(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    post(db, &general, &alice, "internationalisation is hard").await;
    post(db, &general, &alice, "the internet is down").await;
    post(db, &general, &alice, "an interval tree").await;
    post(db, &general, &alice, "int main").await;
    let rooms = [general.id];

    assert_eq!(
        found(&db.store, &rooms, "inter*").await,
        [
            "an interval tree",
            "the internet is down",
            "internationalisation is hard"
        ]
    );
    // Longer than the longest prefix the index holds: the text decides.
    assert_eq!(
        found(&db.store, &rooms, "internat*").await,
        ["internationalisation is hard"]
    );
    assert_eq!(
        found(&db.store, &rooms, "int* DOWN").await,
        ["the internet is down"]
    );
    // A whole word is not a prefix.
    assert_eq!(found(&db.store, &rooms, "int").await, ["int main"]);
}

async fn only_the_rooms_asked_for_are_searched(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let workshop = workshop(db, &alice).await;
    post(db, &general, &alice, "budget in general").await;
    post(db, &workshop, &alice, "budget in the workshop").await;

    assert_eq!(
        found(&db.store, &[general.id], "budget").await,
        ["budget in general"]
    );
    assert_eq!(
        found(&db.store, &[workshop.id], "budget").await,
        ["budget in the workshop"]
    );
    assert_eq!(
        found(&db.store, &[general.id, workshop.id], "budget").await,
        ["budget in the workshop", "budget in general"]
    );
    assert!(found(&db.store, &[], "budget").await.is_empty());
}

async fn an_index_entry_pointing_into_another_room_opens_nothing(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let secret = workshop(db, &alice).await;
    post(db, &general, &alice, "lunch plans").await;
    post(db, &secret, &alice, "secret lunch plans").await;
    assert_eq!(found(&db.store, &[general.id], "secret").await.len(), 0);
    // Whatever the index says (a damaged row, a key shared by chance),
    // a message of a room not searched is not opened.
    let (g, s) = (general.id.get(), secret.id.get());
    db.execute_raw(&match db.sqlite_path() {
        Some(_) => format!("UPDATE search_terms SET room_id = {g} WHERE room_id = {s}"),
        None => format!(
            "UPDATE search_documents SET terms = terms || \
             (SELECT terms FROM search_documents WHERE room_id = {g} LIMIT 1) \
             WHERE room_id = {s}"
        ),
    })
    .await;
    assert_eq!(
        found(&db.store, &[general.id], "lunch").await,
        ["lunch plans"]
    );
    assert!(found(&db.store, &[general.id], "secret").await.is_empty());
}

async fn an_edit_is_found_by_its_new_text_only_and_a_deletion_by_none(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let first = post(db, &general, &alice, "see you at the harbour").await;
    let second = post(db, &general, &alice, "bring the lantern").await;
    let rooms = [general.id];

    db.store
        .change_message(change(
            &general,
            first,
            &alice,
            MessageOp::Edit {
                content: MessageBody::parse("see you at the lighthouse").expect("body"),
            },
        ))
        .await
        .expect("edit");
    assert!(found(&db.store, &rooms, "harbour").await.is_empty());
    assert_eq!(
        found(&db.store, &rooms, "lighthouse").await,
        ["see you at the lighthouse"]
    );
    assert_eq!(
        found(&db.store, &rooms, "see").await,
        ["see you at the lighthouse"]
    );

    db.store
        .change_message(change(&general, second, &alice, MessageOp::Delete))
        .await
        .expect("delete");
    assert!(found(&db.store, &rooms, "lantern").await.is_empty());
    assert!(found(&db.store, &rooms, "bring").await.is_empty());
    // The edit's own record in the sequence is not a message to find.
    assert_eq!(found(&db.store, &rooms, "you").await.len(), 1);
}

async fn results_come_newest_first_a_page_at_a_time_each_once(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let workshop = workshop(db, &alice).await;
    let mut sent = Vec::new();
    for n in 0..11 {
        let room = if n % 3 == 0 { &workshop } else { &general };
        let text = format!("status report number {n}");
        post(db, room, &alice, &text).await;
        post(db, room, &alice, "unrelated chatter").await;
        sent.push(text);
    }
    sent.reverse();
    let rooms = [general.id, workshop.id];
    assert_eq!(found(&db.store, &rooms, "status report").await, sent);

    // A page of 4, then the rest from its cursor.
    let query = SearchQuery::parse("report").expect("query");
    let page = db
        .store
        .search(&rooms, &query, None, 4)
        .await
        .expect("search");
    assert_eq!(page.hits.len(), 4);
    let next = page.next.expect("more to come");
    assert_eq!(Some(next), page.hits.last().map(|hit| hit.message.id));
    let rest = db
        .store
        .search(&rooms, &query, Some(next), 100)
        .await
        .expect("search");
    assert_eq!(rest.hits.len(), 7);
    assert_eq!(rest.next, None);
    assert!(rest.hits.iter().all(|hit| hit.message.id < next));
    // A cursor past everything finds nothing.
    let none = db
        .store
        .search(&rooms, &query, Some(MessageId(1)), 100)
        .await
        .expect("search");
    assert!(none.hits.is_empty());
}

async fn a_word_found_by_its_prefix_fills_a_page_past_the_words_sharing_it(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    // "tea" is looked up by its prefix, which the 150 newer messages about
    // teams also hold: a page still reads past them to its 20 results.
    let mut sent = Vec::new();
    for n in 0..30 {
        let text = format!("tea break {n}");
        post(db, &general, &alice, &text).await;
        sent.push(text);
    }
    for n in 0..150 {
        let text = format!("team sync {n}, teams of teachers");
        post(db, &general, &alice, &text).await;
    }
    sent.reverse();
    let rooms = [general.id];
    let query = SearchQuery::parse("tea").expect("query");
    let page = db
        .store
        .search(&rooms, &query, None, 20)
        .await
        .expect("search");
    let texts: Vec<String> = page
        .hits
        .iter()
        .map(|hit| hit.message.content.clone().expect("text"))
        .collect();
    assert_eq!(texts, sent[..20]);
    let rest = db
        .store
        .search(&rooms, &query, page.next, 20)
        .await
        .expect("search");
    assert_eq!(rest.hits.len(), 10);
    assert_eq!(rest.next, None);
    assert_eq!(found(&db.store, &rooms, "tea").await, sent);
}

async fn messages_far_apart_are_found_newest_first_however_many_lie_between(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let workshop = workshop(db, &alice).await;
    // Message ids jump ahead between the needles, as if thousands of other
    // messages had been written in between: the search reads back through
    // every distance at which it changes how far one lookup reaches.
    let mut sent = Vec::new();
    for (n, id) in [0_i64, 3_000, 9_000, 40_000, 300_000, 2_000_000, 2_000_100]
        .into_iter()
        .enumerate()
    {
        if id > 0 {
            db.execute_raw(&match db.sqlite_path() {
                Some(_) => format!("UPDATE sqlite_sequence SET seq = {id} WHERE name = 'messages'"),
                None => format!("SELECT setval('messages_id_seq', {id})"),
            })
            .await;
        }
        let room = if n % 2 == 0 { &general } else { &workshop };
        let text = format!("needle number {n} in the haystack");
        post(db, room, &alice, &text).await;
        post(db, room, &alice, "only haystack here").await;
        sent.push(text);
    }
    sent.reverse();
    let rooms = [general.id, workshop.id];
    assert_eq!(found(&db.store, &rooms, "needle").await, sent);
    assert_eq!(found(&db.store, &rooms, "needle haystack").await, sent);
    assert_eq!(found(&db.store, &rooms, "haystack").await.len(), 14);
    assert_eq!(found(&db.store, &[workshop.id], "needle").await.len(), 3);
    // One at a time, each page's cursor leading to the next.
    let query = SearchQuery::parse("needle").expect("query");
    let mut before = None;
    let mut one_by_one = Vec::new();
    loop {
        let page = db
            .store
            .search(&rooms, &query, before, 1)
            .await
            .expect("search");
        one_by_one.extend(page.hits.into_iter().filter_map(|hit| hit.message.content));
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
        assert!(one_by_one.len() <= sent.len(), "{one_by_one:?}");
    }
    assert_eq!(one_by_one, sent);
}

/// Messages with edits and deletions, and what some queries find.
async fn fill(db: &TestDb) -> (Vec<RoomId>, Vec<(&'static str, Vec<String>)>) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let workshop = workshop(db, &alice).await;
    let texts = [
        "Déjà vu at the museum",
        "museum tickets are sold out",
        "the MUSEUM opens at nine",
        "nine tickets, please",
        "a note about the budget",
        "budget approved by the board",
    ];
    let mut seqs = Vec::new();
    for (n, text) in texts.iter().enumerate() {
        let room = if n % 2 == 0 { &general } else { &workshop };
        seqs.push((room.clone(), post(db, room, &alice, text).await));
    }
    let (room, seq) = &seqs[1];
    db.store
        .change_message(change(
            room,
            *seq,
            &alice,
            MessageOp::Edit {
                content: MessageBody::parse("gallery tickets are sold out").expect("body"),
            },
        ))
        .await
        .expect("edit");
    let (room, seq) = &seqs[4];
    db.store
        .change_message(change(room, *seq, &alice, MessageOp::Delete))
        .await
        .expect("delete");
    let rooms = vec![general.id, workshop.id];
    let mut answers = Vec::new();
    for query in [
        "museum", "deja", "tickets", "nine", "budget", "mus*", "gallery", "sold out",
    ] {
        answers.push((query, found(&db.store, &rooms, query).await));
    }
    (rooms, answers)
}

async fn a_rebuilt_index_answers_as_the_live_one_under_the_same_key_or_a_new_one(db: &TestDb) {
    let (rooms, live) = fill(db).await;
    assert_eq!(live[0].1.len(), 2, "{live:?}");
    assert!(live[4].1.len() == 1, "{live:?}");

    // The same key, from an empty index.
    let (index, _) = db.search_index();
    db.execute_raw(&format!("DELETE FROM {index}")).await;
    db.execute_raw("DELETE FROM search_reindex").await;
    assert!(found(&db.store, &rooms, "museum").await.is_empty());
    let key = search_keys().current().clone();
    let mut steps = 0;
    loop {
        let progress = db
            .store
            .reindex_step(&key, 2, false)
            .await
            .expect("reindex");
        steps += 1;
        if progress.finished {
            break;
        }
        assert!(steps < 100, "the rebuild does not end");
    }
    assert!(steps > 2, "a batch of 2 takes several steps: {steps}");
    for (query, expected) in &live {
        assert_eq!(&found(&db.store, &rooms, query).await, expected, "{query}");
    }
    assert_eq!(
        db.store.search_index_state(&key).await.expect("state"),
        SearchIndexState::Complete
    );

    // A new key, built beside the current one, then put in its place.
    let next = SearchKey::generate();
    let moving = db
        .store_searching(SearchKeys::new(key.clone(), Some(next.clone())))
        .await;
    assert_eq!(
        moving.search_index_state(&next).await.expect("state"),
        SearchIndexState::NotBuilt
    );
    let mut progress = moving.reindex_step(&next, 500, false).await.expect("step");
    while !progress.finished {
        progress = moving.reindex_step(&next, 500, false).await.expect("step");
    }
    let moved = db
        .store_searching(SearchKeys::new(next.clone(), None))
        .await;
    for (query, expected) in &live {
        assert_eq!(&found(&moved, &rooms, query).await, expected, "{query}");
    }
    // The old key's entries go; the new key's stay.
    let before = db.count_rows(index).await;
    let mut dropped = 0;
    loop {
        let deleted = moved
            .drop_search_generations(&[next.generation()], 3)
            .await
            .expect("drop");
        if deleted == 0 {
            break;
        }
        dropped += deleted;
    }
    assert_eq!(dropped * 2, u64::try_from(before).expect("count"));
    for (query, expected) in &live {
        assert_eq!(&found(&moved, &rooms, query).await, expected, "{query}");
    }
    assert!(found(&db.store, &rooms, "museum").await.is_empty());
}

async fn the_index_stores_no_word_readably(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let words = ["zanzibar", "quixotic", "marmalade"];
    post(db, &general, &alice, "Zanzibar, quixotic MARMALADE").await;
    let rooms = [general.id];
    assert_eq!(found(&db.store, &rooms, "marmalade").await.len(), 1);
    let (index, columns) = db.search_index();
    assert!(db.count_rows(index).await >= 1);

    // Every column of every entry, as text.
    let dumped = db.dump_table(index, columns).await;
    assert!(!dumped.is_empty());
    for word in words {
        for form in [word, &word[..3], &word[..5]] {
            assert!(
                !dumped.to_lowercase().contains(form),
                "{form} is readable in the index: {dumped}"
            );
        }
    }
    // On SQLite, nowhere in the database's files either (bodies are
    // encrypted, index entries hashed).
    if let Some(path) = db.sqlite_path() {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            if let Ok(read) = std::fs::read(&file) {
                bytes.extend(read);
            }
        }
        assert!(!bytes.is_empty());
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        for word in words {
            assert!(!text.contains(word), "{word} is readable in the database");
        }
    }
}

async fn an_empty_database_has_a_complete_index_and_a_filled_one_needs_reindex(db: &TestDb) {
    let key = search_keys().current().clone();
    assert_eq!(
        db.store.search_index_state(&key).await.expect("state"),
        SearchIndexState::Complete
    );
    let alice = db.user("alice").await;
    let general = db.general().await;
    post(db, &general, &alice, "written after").await;
    let other = SearchKey::generate();
    assert_eq!(
        db.store.search_index_state(&other).await.expect("state"),
        SearchIndexState::NotBuilt
    );
    let step = db.store.reindex_step(&other, 1, false).await.expect("step");
    assert!(!step.finished);
    assert_eq!(
        db.store.search_index_state(&other).await.expect("state"),
        SearchIndexState::Partial {
            next_message_id: step.next_message_id
        }
    );
}

/// The message ids the index holds entries for.
async fn indexed_messages(db: &TestDb) -> std::collections::BTreeSet<i64> {
    db.dump_table(db.search_index().0, "message_id")
        .await
        .lines()
        .map(|line| line.trim().parse().expect("a message id"))
        .collect()
}

async fn an_erased_account_and_a_deleted_room_leave_no_index_entries(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let general = db.general().await;
    let workshop = workshop(db, &bob).await;
    let send = async |room: &Room, user: &User, text: &str| {
        db.store
            .append_ok(vec![message(room.id, user, text, None)])
            .await
            .expect("append")[0]
            .message
            .id
            .get()
    };
    let alices = send(&general, &alice, "alice writes about tulips").await;
    let bobs = send(&general, &bob, "bob writes about tulips too").await;
    let in_workshop = send(&workshop, &bob, "tulips in the workshop").await;
    assert_eq!(
        indexed_messages(db).await,
        [alices, bobs, in_workshop].into_iter().collect()
    );

    db.store
        .delete_user(alice.id, true)
        .await
        .expect("erase the account");
    assert!(
        db.store
            .delete_room(workshop.id)
            .await
            .expect("delete room")
    );

    assert_eq!(indexed_messages(db).await, [bobs].into_iter().collect());
    assert_eq!(
        found(&db.store, &[general.id], "tulips").await,
        ["bob writes about tulips too"]
    );
}
