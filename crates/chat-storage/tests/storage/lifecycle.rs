//! Messages people change: replies, edits, deletions and reactions, each
//! recorded in the room's sequence, on both backends through
//! `conformance_suite!`.

use chat_domain::{ClientId, Emoji, MessageBody, Refusal, RoomName, Seq, Visibility};
use chat_storage::{
    Cursor, MembershipOp, Message, MessageChange, MessageOp, NewChange, Reaction, StorageError,
    User,
};

use crate::support::{AppendOk, TestDb, actor, message};

conformance_suite!(
    an_edit_replaces_the_text_keeps_the_old_one_and_is_recorded_at_the_next_seq,
    only_the_author_edits_and_a_refused_change_changes_nothing,
    a_moderator_deletes_anyones_message_and_its_texts_are_erased,
    a_change_resent_with_its_client_id_is_made_once,
    a_reply_is_stored_with_the_seq_it_answers,
    reactions_are_counted_by_kind_once_per_member_and_recorded_in_the_sequence,
    a_message_carries_at_most_twenty_kinds_and_loses_its_reactions_when_deleted,
);

fn react(room: &chat_storage::Room, target: Seq, user: &User, emoji: &str) -> NewChange {
    NewChange {
        op: MessageOp::React {
            emoji: Emoji::parse(emoji).expect("valid reaction"),
        },
        ..edit(room, target, user, "unused")
    }
}

fn unreact(room: &chat_storage::Room, target: Seq, user: &User, emoji: &str) -> NewChange {
    NewChange {
        op: MessageOp::Unreact {
            emoji: Emoji::parse(emoji).expect("valid reaction"),
        },
        ..edit(room, target, user, "unused")
    }
}

/// `by` mutes `who` in `room` for five minutes.
async fn mute(db: &TestDb, room: &chat_storage::Room, by: &User, who: &User) {
    let until = chrono::Utc::now() + chrono::Duration::minutes(5);
    db.store
        .change_membership(room.id, &actor(by), who.id, &MembershipOp::Mute { until })
        .await
        .expect("mute");
}

/// The reactions to the message at `target` as `viewer` sees them.
async fn reactions_seen(
    db: &TestDb,
    room: &chat_storage::Room,
    target: Seq,
    viewer: &User,
) -> Vec<(String, i64, bool)> {
    let mut found = db
        .store
        .reactions(room.id, &[target], viewer.id)
        .await
        .expect("reactions");
    assert!(found.len() <= 1, "{found:?}");
    found
        .pop()
        .inspect(|(seq, _)| assert_eq!(*seq, target))
        .map(|(_, reactions)| {
            reactions
                .into_iter()
                .map(|Reaction { emoji, count, me }| (emoji, count, me))
                .collect()
        })
        .unwrap_or_default()
}

fn edit(room: &chat_storage::Room, target: Seq, user: &User, text: &str) -> NewChange {
    NewChange {
        room_id: room.id,
        target,
        user_id: user.id,
        username: user.username.clone(),
        op: MessageOp::Edit {
            content: MessageBody::parse(text).expect("valid body"),
        },
        client_id: None,
    }
}

fn delete(room: &chat_storage::Room, target: Seq, user: &User) -> NewChange {
    NewChange {
        op: MessageOp::Delete,
        ..edit(room, target, user, "unused")
    }
}

/// A public room owned by `owner`, joined by `members`.
async fn room_with(db: &TestDb, owner: &User, members: &[&User]) -> chat_storage::Room {
    let room = db
        .store
        .create_room(
            &RoomName::public("workshop").expect("name"),
            owner.id,
            Visibility::Public,
            None,
            false,
        )
        .await
        .expect("create");
    for user in members {
        db.store
            .change_membership(room.id, &actor(user), user.id, &MembershipOp::Join)
            .await
            .expect("join");
    }
    room
}

async fn send(db: &TestDb, room: &chat_storage::Room, user: &User, text: &str) -> Message {
    db.store
        .append_ok(vec![message(room.id, user, text, None)])
        .await
        .expect("append")
        .remove(0)
        .message
}

async fn at(db: &TestDb, room: &chat_storage::Room, seq: Seq) -> Message {
    db.store
        .message_at(room.id, seq)
        .await
        .expect("read")
        .expect("a row at that seq")
}

fn refusal(result: Result<chat_storage::Changed, StorageError>) -> Refusal {
    match result {
        Err(StorageError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn an_edit_replaces_the_text_keeps_the_old_one_and_is_recorded_at_the_next_seq(db: &TestDb) {
    let alice = db.user("alice").await;
    let room = room_with(db, &alice, &[]).await;
    let sent = send(db, &room, &alice, "helo").await;
    // Read once so that memory holds the room's newest page.
    db.store
        .history(room.id, Cursor::Latest, 50)
        .await
        .expect("history");

    let first = db
        .store
        .change_message(edit(&room, sent.seq, &alice, "hello"))
        .await
        .expect("edit");
    let second = db
        .store
        .change_message(edit(&room, sent.seq, &alice, "hello, world"))
        .await
        .expect("edit");
    assert!(!first.duplicate && !second.duplicate);
    assert_eq!(first.change.seq.get(), sent.seq.get() + 1);
    assert_eq!(second.change.seq.get(), sent.seq.get() + 2);
    assert_eq!(
        second.change.change,
        Some(MessageChange::Edited { target: sent.seq })
    );
    assert_eq!(second.change.content.as_deref(), Some("hello, world"));
    assert_eq!(second.change.username, alice.username);

    // The newest page, from memory or not, shows the current text and
    // both changes after it.
    let page = db
        .store
        .history(room.id, Cursor::Latest, 50)
        .await
        .expect("history");
    let original = page
        .messages
        .iter()
        .find(|message| message.seq == sent.seq)
        .expect("the message");
    assert_eq!(original.content.as_deref(), Some("hello, world"));
    assert!(original.edited_at.is_some());
    assert_eq!(
        page.messages.last().map(|message| message.seq),
        Some(second.change.seq)
    );

    let versions = db
        .store
        .versions(room.id, sent.seq)
        .await
        .expect("versions");
    let texts: Vec<Option<&str>> = versions
        .iter()
        .map(|version| version.content.as_deref())
        .collect();
    assert_eq!(texts, [Some("hello"), Some("helo")], "newest first");
    assert_eq!(versions[0].replaced_by, second.change.seq);
    // Earlier texts are stored encrypted.
    for raw in db.raw_versions().await {
        assert!(raw.body.starts_with("gAAAAA"), "{}", raw.body);
    }
    // The seed's history shows the current text and no change.
    let latest = db.store.latest(room.id, 10).await.expect("latest");
    let shown: Vec<Option<&str>> = latest.iter().map(|m| m.content.as_deref()).collect();
    assert_eq!(shown, [Some("hello, world")]);
}

async fn only_the_author_edits_and_a_refused_change_changes_nothing(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let carol = db.user("carol").await;
    let room = room_with(db, &alice, &[&bob]).await;
    let sent = send(db, &room, &bob, "bob's words").await;
    let member_event = Seq::new(sent.seq.get() - 1).expect("seq");
    let before = db
        .store
        .room_by_id(room.id)
        .await
        .expect("room")
        .expect("room")
        .last_seq;

    // Not even the owner edits someone else's message.
    assert!(matches!(
        refusal(
            db.store
                .change_message(edit(&room, sent.seq, &alice, "mine now"))
                .await
        ),
        Refusal::Forbidden(_)
    ));
    // A member may not delete another's.
    let alices = send(db, &room, &alice, "alice's words").await;
    assert!(matches!(
        refusal(
            db.store
                .change_message(delete(&room, alices.seq, &bob))
                .await
        ),
        Refusal::Forbidden(_)
    ));
    // Someone outside the room changes nothing.
    assert_eq!(
        refusal(
            db.store
                .change_message(delete(&room, sent.seq, &carol))
                .await
        ),
        Refusal::NotAMember
    );
    // No message at that seq, or a membership change there.
    let past = Seq::new(alices.seq.get() + 5).expect("seq");
    assert_eq!(
        refusal(db.store.change_message(edit(&room, past, &bob, "x")).await),
        Refusal::MessageNotFound
    );
    assert_eq!(
        refusal(
            db.store
                .change_message(edit(&room, member_event, &bob, "x"))
                .await
        ),
        Refusal::MessageNotFound
    );
    // A muted author may not edit.
    mute(db, &room, &alice, &bob).await;
    assert!(matches!(
        refusal(
            db.store
                .change_message(edit(&room, sent.seq, &bob, "x"))
                .await
        ),
        Refusal::Muted { .. }
    ));

    let after = db
        .store
        .room_by_id(room.id)
        .await
        .expect("room")
        .expect("room")
        .last_seq;
    // One message and the mute were recorded; no refused change was.
    assert_eq!(after.get(), before.get() + 2);
    let unchanged = at(db, &room, sent.seq).await;
    assert_eq!(unchanged.content.as_deref(), Some("bob's words"));
    assert!(unchanged.edited_at.is_none() && unchanged.deleted_at.is_none());
    assert!(db.raw_versions().await.is_empty());
}

async fn a_moderator_deletes_anyones_message_and_its_texts_are_erased(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let room = room_with(db, &alice, &[&bob]).await;
    let sent = send(db, &room, &bob, "a secret plan").await;
    db.store
        .change_message(edit(&room, sent.seq, &bob, "a secret plan, revised"))
        .await
        .expect("edit");
    let raw_before = db.raw_messages().await.len();

    let deleted = db
        .store
        .change_message(delete(&room, sent.seq, &alice))
        .await
        .expect("the owner deletes");
    assert_eq!(
        deleted.change.change,
        Some(MessageChange::Deleted { target: sent.seq })
    );
    assert_eq!(deleted.change.username, alice.username);
    assert_eq!(deleted.change.content, None);

    let tombstone = at(db, &room, sent.seq).await;
    assert!(tombstone.deleted_at.is_some());
    assert_eq!(tombstone.deleted_by, Some(alice.id));
    assert_eq!(tombstone.content, None);
    // The message, its edit's text and its earlier text are gone from the
    // tables; the rows that keep the seqs remain.
    assert!(db.raw_versions().await.is_empty());
    let raw = db.raw_messages().await;
    assert_eq!(raw.len(), raw_before + 1, "one row for the deletion");
    let nonempty = raw.iter().filter(|row| !row.body.is_empty()).count();
    // The membership change (bob's join) keeps its body; nothing else does.
    assert_eq!(nonempty, 1, "{raw:?}");
    assert!(
        db.store
            .versions(room.id, sent.seq)
            .await
            .expect("versions")
            .is_empty()
    );
    // A deleted message can be neither edited nor deleted again.
    assert_eq!(
        refusal(
            db.store
                .change_message(edit(&room, sent.seq, &bob, "back"))
                .await
        ),
        Refusal::MessageDeleted
    );
    assert_eq!(
        refusal(db.store.change_message(delete(&room, sent.seq, &bob)).await),
        Refusal::MessageDeleted
    );
    assert!(
        db.store
            .latest(room.id, 10)
            .await
            .expect("latest")
            .is_empty()
    );
}

async fn a_change_resent_with_its_client_id_is_made_once(db: &TestDb) {
    let alice = db.user("alice").await;
    let room = room_with(db, &alice, &[]).await;
    let sent = send(db, &room, &alice, "first").await;
    let mut change = edit(&room, sent.seq, &alice, "second");
    change.client_id = Some(ClientId::parse("edit-1").expect("client id"));
    let made = db.store.change_message(change.clone()).await.expect("edit");
    let again = db.store.change_message(change).await.expect("resend");
    assert!(!made.duplicate && again.duplicate);
    assert_eq!(made.change.seq, again.change.seq);
    assert_eq!(
        db.store
            .versions(room.id, sent.seq)
            .await
            .expect("versions")
            .len(),
        1
    );
}

async fn a_reply_is_stored_with_the_seq_it_answers(db: &TestDb) {
    let alice = db.user("alice").await;
    let room = room_with(db, &alice, &[]).await;
    let question = send(db, &room, &alice, "tea?").await;
    let mut answer = message(room.id, &alice, "yes", None);
    answer.reply_to = Some(question.seq);
    let stored = db
        .store
        .append_ok(vec![answer])
        .await
        .expect("append")
        .remove(0)
        .message;
    assert_eq!(stored.reply_to, Some(question.seq));
    assert_eq!(at(db, &room, stored.seq).await.reply_to, Some(question.seq));
}

async fn reactions_are_counted_by_kind_once_per_member_and_recorded_in_the_sequence(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let carol = db.user("carol").await;
    let room = room_with(db, &alice, &[&bob, &carol]).await;
    let sent = send(db, &room, &alice, "lunch?").await;

    let first = db
        .store
        .change_message(react(&room, sent.seq, &bob, "👍"))
        .await
        .expect("react");
    assert!(!first.duplicate);
    assert_eq!(first.change.seq.get(), sent.seq.get() + 1);
    assert_eq!(
        first.change.change,
        Some(MessageChange::Reacted { target: sent.seq })
    );
    assert_eq!(first.change.content.as_deref(), Some("👍"));
    assert_eq!(first.change.username, bob.username);
    for emoji in ["👍", "🎉"] {
        db.store
            .change_message(react(&room, sent.seq, &carol, emoji))
            .await
            .expect("react");
    }
    assert_eq!(
        reactions_seen(db, &room, sent.seq, &carol).await,
        vec![("👍".to_owned(), 2, true), ("🎉".to_owned(), 1, true)]
    );
    assert_eq!(
        reactions_seen(db, &room, sent.seq, &alice).await,
        vec![("👍".to_owned(), 2, false), ("🎉".to_owned(), 1, false)]
    );
    assert_eq!(at(db, &room, sent.seq).await.reactions, 3);

    // The same reaction again is the one already made: nothing new.
    let again = db
        .store
        .change_message(react(&room, sent.seq, &bob, "👍"))
        .await
        .expect("react again");
    assert!(again.duplicate);
    assert_eq!(again.change.seq, first.change.seq);
    let last = sent.seq.get() + 3;
    assert_eq!(
        db.store
            .history(room.id, Cursor::Latest, 50)
            .await
            .expect("history")
            .messages
            .last()
            .map(|m| m.seq.get()),
        Some(last)
    );

    let taken = db
        .store
        .change_message(unreact(&room, sent.seq, &bob, "👍"))
        .await
        .expect("unreact");
    assert_eq!(taken.change.seq.get(), last + 1);
    assert_eq!(
        taken.change.change,
        Some(MessageChange::Unreacted { target: sent.seq })
    );
    assert_eq!(taken.change.content.as_deref(), Some("👍"));
    assert_eq!(
        reactions_seen(db, &room, sent.seq, &bob).await,
        vec![("👍".to_owned(), 1, false), ("🎉".to_owned(), 1, false)]
    );
    assert_eq!(at(db, &room, sent.seq).await.reactions, 2);
    // A reaction not made cannot be taken back; nothing is recorded.
    assert_eq!(
        refusal(
            db.store
                .change_message(unreact(&room, sent.seq, &bob, "👍"))
                .await
        ),
        Refusal::ReactionNotFound
    );
    assert_eq!(
        db.store
            .history(room.id, Cursor::Latest, 50)
            .await
            .expect("history")
            .messages
            .last()
            .map(|m| m.seq.get()),
        Some(last + 1)
    );
    // A change is not a message one can react to.
    assert_eq!(
        refusal(
            db.store
                .change_message(react(&room, taken.change.seq, &bob, "👍"))
                .await
        ),
        Refusal::MessageNotFound
    );
}

async fn a_message_carries_at_most_twenty_kinds_and_loses_its_reactions_when_deleted(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let carol = db.user("carol").await;
    let room = room_with(db, &alice, &[&bob]).await;
    let sent = send(db, &room, &bob, "vote").await;
    let kinds: Vec<String> = (0..20).map(|n| format!("k{n}")).collect();
    for kind in &kinds {
        db.store
            .change_message(react(&room, sent.seq, &alice, kind))
            .await
            .expect("react");
    }
    assert!(matches!(
        refusal(
            db.store
                .change_message(react(&room, sent.seq, &bob, "k20"))
                .await
        ),
        Refusal::TooManyReactions { max: 20 }
    ));
    // A kind the message has already can still be added to.
    db.store
        .change_message(react(&room, sent.seq, &bob, "k0"))
        .await
        .expect("an existing kind");
    // Someone who is not a member may not react.
    assert_eq!(
        refusal(
            db.store
                .change_message(react(&room, sent.seq, &carol, "k1"))
                .await
        ),
        Refusal::NotAMember
    );
    // A muted member may take a reaction back but not add one.
    mute(db, &room, &alice, &bob).await;
    assert!(matches!(
        refusal(
            db.store
                .change_message(react(&room, sent.seq, &bob, "k1"))
                .await
        ),
        Refusal::Muted { .. }
    ));
    db.store
        .change_message(unreact(&room, sent.seq, &bob, "k0"))
        .await
        .expect("a muted member takes a reaction back");
    let seen = reactions_seen(db, &room, sent.seq, &alice).await;
    assert_eq!(seen.len(), 20);
    assert!(seen.iter().all(|(_, count, me)| *count == 1 && *me));

    db.store
        .change_message(delete(&room, sent.seq, &bob))
        .await
        .expect("the author deletes");
    assert!(reactions_seen(db, &room, sent.seq, &alice).await.is_empty());
    assert_eq!(at(db, &room, sent.seq).await.reactions, 0);
    for change in [
        react(&room, sent.seq, &alice, "k1"),
        unreact(&room, sent.seq, &alice, "k1"),
    ] {
        assert_eq!(
            refusal(db.store.change_message(change).await),
            Refusal::MessageDeleted
        );
    }
}
