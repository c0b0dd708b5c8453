//! Auth sessions and refresh tokens, on both backends through
//! `conformance_suite!`.

use chat_domain::SessionId;
use chat_storage::{Refresh, StorageError, User};
use chrono::{Duration, Utc};

use crate::support::{TestDb, username};

conformance_suite!(
    an_open_session_finds_its_user_and_only_its_user,
    a_revoked_session_finds_no_user_and_refuses_its_refresh_token,
    an_expired_session_finds_no_user_and_refuses_its_refresh_token,
    a_refresh_token_is_exchanged_once_and_a_second_use_revokes_the_session,
    an_unknown_refresh_token_is_refused,
    concurrent_exchanges_of_one_refresh_token_let_exactly_one_succeed,
    a_rotation_extends_the_session,
    signing_in_clears_only_the_users_expired_sessions,
    a_session_id_or_refresh_digest_is_never_stored_twice,
    ended_sessions_are_the_revoked_expired_and_unknown_ones,
);

fn sid(bits: u128) -> SessionId {
    SessionId::from_bits(bits).expect("not zero")
}

/// A stand-in for the SHA-256 digest of a refresh token: 64 hex digits.
fn digest(n: u32) -> String {
    format!("{n:064x}")
}

fn in_days(days: i64) -> chrono::DateTime<Utc> {
    Utc::now() + Duration::days(days)
}

/// The user `session` signs in, given the name its tokens carry. The check
/// that also reads a room's newest seq must agree.
async fn signed_in(db: &TestDb, name: &str, session: SessionId) -> Option<User> {
    let user = db
        .store
        .user_for_session(&username(name), session)
        .await
        .expect("query");
    let reading = db
        .store
        .user_for_session_reading(&username(name), session, db.general().await.id)
        .await
        .expect("query");
    assert_eq!(reading.map(|(user, _)| user), user);
    user
}

/// Presents refresh digest `presented`, to be replaced by `next`.
async fn exchange(db: &TestDb, presented: u32, next: u32) -> Refresh {
    db.store
        .rotate_refresh_token(&digest(presented), &digest(next), in_days(14))
        .await
        .expect("rotate")
}

async fn an_open_session_finds_its_user_and_only_its_user(db: &TestDb) {
    let alice = db.user("Alice").await;
    db.user("bob").await;
    db.store
        .create_session(alice.id, sid(1), &digest(1), in_days(14))
        .await
        .expect("create session");
    let found = db
        .store
        .user_for_session(&username("alice"), sid(1))
        .await
        .expect("query");
    assert_eq!(found.map(|user| user.id), Some(alice.id));
    // Another user's name with this session, or another session id, finds
    // nobody.
    assert_eq!(signed_in(db, "bob", sid(1)).await, None);
    assert_eq!(signed_in(db, "alice", sid(2)).await, None);
}

async fn a_revoked_session_finds_no_user_and_refuses_its_refresh_token(db: &TestDb) {
    let alice = db.user("alice").await;
    db.store
        .create_session(alice.id, sid(7), &digest(1), in_days(14))
        .await
        .expect("create session");
    assert!(db.store.revoke_session(sid(7)).await.expect("revoke"));
    // Revoking again changes nothing.
    assert!(!db.store.revoke_session(sid(7)).await.expect("revoke"));
    assert_eq!(signed_in(db, "alice", sid(7)).await, None);
    let outcome = exchange(db, 1, 2).await;
    assert_eq!(outcome, Refresh::Refused);
}

async fn an_expired_session_finds_no_user_and_refuses_its_refresh_token(db: &TestDb) {
    let alice = db.user("alice").await;
    db.store
        .create_session(
            alice.id,
            sid(3),
            &digest(1),
            Utc::now() - Duration::seconds(1),
        )
        .await
        .expect("create session");
    assert_eq!(signed_in(db, "alice", sid(3)).await, None);
    let outcome = exchange(db, 1, 2).await;
    assert_eq!(outcome, Refresh::Refused);
}

async fn a_refresh_token_is_exchanged_once_and_a_second_use_revokes_the_session(db: &TestDb) {
    let alice = db.user("alice").await;
    db.store
        .create_session(alice.id, sid(9), &digest(1), in_days(14))
        .await
        .expect("create session");

    let first = exchange(db, 1, 2).await;
    let Refresh::Rotated { user, session } = first else {
        panic!("expected a rotation, got {first:?}");
    };
    assert_eq!((user.id, session), (alice.id, sid(9)));

    // The used token again: a copy is in someone's hands.
    let again = exchange(db, 1, 3).await;
    assert_eq!(
        again,
        Refresh::Reused {
            user_id: alice.id,
            session: sid(9)
        }
    );
    // The whole family is gone: the token issued by the rotation, and the
    // session itself.
    let next = exchange(db, 2, 4).await;
    assert_eq!(next, Refresh::Refused);
    assert_eq!(signed_in(db, "alice", sid(9)).await, None);
    assert!(!db.store.revoke_session(sid(9)).await.expect("revoke"));
}

async fn an_unknown_refresh_token_is_refused(db: &TestDb) {
    let outcome = exchange(db, 42, 43).await;
    assert_eq!(outcome, Refresh::Refused);
}

async fn concurrent_exchanges_of_one_refresh_token_let_exactly_one_succeed(db: &TestDb) {
    let alice = db.user("alice").await;
    for round in 0..5_u32 {
        let session = sid(100 + u128::from(round));
        let first = 1_000 * (round + 1);
        db.store
            .create_session(alice.id, session, &digest(first), in_days(14))
            .await
            .expect("create session");
        let mut handles = Vec::new();
        for attempt in 1..=4 {
            let store = db.store.clone();
            let presented = digest(first);
            let next = digest(first + attempt);
            handles.push(tokio::spawn(async move {
                store
                    .rotate_refresh_token(&presented, &next, in_days(14))
                    .await
            }));
        }
        let mut rotated = 0;
        let mut reused = 0;
        for handle in handles {
            match handle.await.expect("task").expect("rotate") {
                Refresh::Rotated { .. } => rotated += 1,
                Refresh::Reused { .. } => reused += 1,
                Refresh::Refused => {}
            }
        }
        assert_eq!(rotated, 1, "round {round}");
        // The losers saw the token used: the session ends, as for any reuse.
        assert!(reused >= 1, "round {round}");
        assert_eq!(signed_in(db, "alice", session).await, None);
    }
}

async fn a_rotation_extends_the_session(db: &TestDb) {
    let alice = db.user("alice").await;
    // About to end...
    db.store
        .create_session(
            alice.id,
            sid(5),
            &digest(1),
            Utc::now() + Duration::seconds(2),
        )
        .await
        .expect("create session");
    let outcome = exchange(db, 1, 2).await;
    assert!(matches!(outcome, Refresh::Rotated { .. }), "{outcome:?}");
    // ...and open well past that after the rotation.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert!(signed_in(db, "alice", sid(5)).await.is_some());
}

async fn signing_in_clears_only_the_users_expired_sessions(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let past = Utc::now() - Duration::seconds(1);
    db.store
        .create_session(alice.id, sid(2), &digest(2), in_days(1))
        .await
        .expect("create");
    db.store
        .create_session(alice.id, sid(1), &digest(1), past)
        .await
        .expect("create");
    db.store
        .create_session(bob.id, sid(3), &digest(3), past)
        .await
        .expect("create");
    assert_eq!(db.count_rows("auth_sessions").await, 3);
    assert_eq!(db.count_rows("refresh_tokens").await, 3);

    db.store
        .create_session(alice.id, sid(4), &digest(4), in_days(1))
        .await
        .expect("create");
    // Alice's expired session went, with its token; her open one and Bob's
    // stay until their own users sign in.
    assert_eq!(db.count_rows("auth_sessions").await, 3);
    assert_eq!(db.count_rows("refresh_tokens").await, 3);
    assert!(signed_in(db, "alice", sid(2)).await.is_some());
}

async fn a_session_id_or_refresh_digest_is_never_stored_twice(db: &TestDb) {
    let alice = db.user("alice").await;
    db.store
        .create_session(alice.id, sid(1), &digest(1), in_days(1))
        .await
        .expect("create");
    let same_id = db
        .store
        .create_session(alice.id, sid(1), &digest(2), in_days(1))
        .await;
    assert!(
        matches!(same_id, Err(StorageError::Conflict(_))),
        "{same_id:?}"
    );
    let same_digest = db
        .store
        .create_session(alice.id, sid(2), &digest(1), in_days(1))
        .await;
    assert!(
        matches!(same_digest, Err(StorageError::Conflict(_))),
        "{same_digest:?}"
    );
    // Neither failure left a session behind.
    assert_eq!(db.count_rows("auth_sessions").await, 1);
}

async fn ended_sessions_are_the_revoked_expired_and_unknown_ones(db: &TestDb) {
    let alice = db.user("alice").await;
    db.store
        .create_session(alice.id, sid(1), &digest(1), in_days(1))
        .await
        .expect("create");
    db.store
        .create_session(alice.id, sid(2), &digest(2), in_days(1))
        .await
        .expect("create");
    db.store
        .create_session(
            alice.id,
            sid(3),
            &digest(3),
            Utc::now() - Duration::seconds(1),
        )
        .await
        .expect("create");
    db.store.revoke_session(sid(2)).await.expect("revoke");
    let asked = [sid(1), sid(2), sid(3), sid(4)];
    let ended = db.store.ended_sessions(&asked).await.expect("query");
    assert_eq!(ended, [sid(2), sid(3), sid(4)]);
    assert!(
        db.store
            .ended_sessions(&[])
            .await
            .expect("query")
            .is_empty()
    );
    // Many at once, across several queries.
    let many: Vec<SessionId> = (1..=1_200).map(sid).collect();
    let ended = db.store.ended_sessions(&many).await.expect("query");
    assert_eq!(ended.len(), 1_199);
    assert!(!ended.contains(&sid(1)));
}
