use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chat_crypto::{KeyId, Sealed};
use chat_domain::e2e::MlsKind;
use chat_domain::{MessageId, Refusal, RoomId, Seq, UserId};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::client_ids::StoredByClientId;
use crate::import::{Provenance, RecordImports};
use crate::insert_messages::InsertMessages;
use crate::model::{
    AppendResult, Appended, Cursor, MemberEvent, Message, MessageChange, NewMessage, Page,
};
use crate::room_counters::{LockRoomCounters, SetRoomCounters};
use crate::rows::{
    MESSAGE_COLUMNS, MessageRow, NewMessageRow, client_id, member_change, now, role, seq, username,
    utc,
};
use crate::schema::{messages, room_bans, users};
use crate::search_index::{IndexEntry, SearchIndex};
use crate::standing::StandingOf;
use crate::{StorageError, Store};

/// The most messages one history call returns, whatever the caller asks.
pub const MAX_PAGE: i64 = 1_000;

/// Rows per INSERT statement. A batch is one statement unless it is larger
/// than this; 2,000 rows of 8 values stay well under the bind-parameter
/// limits of PostgreSQL (65,535) and SQLite (32,766).
const ROWS_PER_INSERT: usize = 2_000;

/// Rooms per counter statement (see [`crate::room_counters`]): up to three
/// bind parameters each.
const ROOMS_PER_STATEMENT: usize = 2_000;

/// (user, client id) pairs per duplicate look-up (see
/// [`crate::client_ids`]): two bind parameters each on SQLite.
const PAIRS_PER_STATEMENT: usize = 2_000;

/// How often a batch is written again after its insert met a stored client
/// id (see [`Store::append_messages`]).
const CLIENT_ID_RETRIES: usize = 3;

/// Records per `imported_messages` insert: two bind parameters each.
const RECORDS_PER_STATEMENT: usize = 2_000;

/// Where the messages of a batch come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin<'a> {
    /// Sent now: every message is stamped with the time of the write.
    Live,
    /// Brought over by `import-original`, one entry per message of the
    /// batch: each keeps its original time, and its original id is recorded
    /// in `imported_messages` in the same transaction.
    Imported(&'a [Provenance]),
}

/// Whether a batch's transaction looks for stored resends before inserting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resends {
    /// Insert straight away; should a (user, client id) turn out to be
    /// stored already, the insert fails, the transaction is rolled back and
    /// the batch is written again with [`Resends::LookUp`].
    Unexpected,
    /// Look up every (user, client id) of the batch first.
    LookUp,
}

/// The stored messages of `pairs` (user id, client id), by pair. A macro so
/// that one text serves the connection of either backend in
/// `write_transaction!`.
macro_rules! stored_by_client_id {
    ($conn:expr, $pairs:expr) => {{
        let mut stored: HashMap<(i64, String), StoredRow> = HashMap::new();
        for chunk in $pairs.chunks(PAIRS_PER_STATEMENT) {
            let rows: Vec<StoredRow> = StoredByClientId::new(chunk).load(&mut *$conn).await?;
            for row in rows {
                if let Some(client_id) = row.client_id.clone() {
                    stored.insert((row.user_id, client_id), row);
                }
            }
        }
        stored
    }};
}

/// Why each of `refused` (room id, user id), whose messages the insert left
/// out at `$now`, may not post there: muted, banned, or not a member. Runs
/// in the batch's transaction, so it sees what the insert saw.
macro_rules! refusals {
    ($conn:expr, $refused:expr, $now:expr) => {{
        let now_at: NaiveDateTime = $now;
        let pairs: Vec<(i64, i64)> = $refused.iter().copied().collect();
        let mut reasons: HashMap<(i64, i64), Refusal> = HashMap::with_capacity(pairs.len());
        for chunk in pairs.chunks(PAIRS_PER_STATEMENT) {
            let rows: Vec<(i64, i64, Option<NaiveDateTime>)> =
                StandingOf::new(chunk).load(&mut *$conn).await?;
            for (room, user, muted_until) in rows {
                // A member is left out only while muted.
                let until = muted_until.filter(|until| *until > now_at).ok_or_else(|| {
                    StorageError::Corrupt(format!(
                        "user {user} may post in room {room} but was left out"
                    ))
                })?;
                reasons.insert((room, user), Refusal::Muted { until: utc(until) });
            }
        }
        for &(room, user) in &pairs {
            if reasons.contains_key(&(room, user)) {
                continue;
            }
            let ban: Option<Option<NaiveDateTime>> = room_bans::table
                .find((room, user))
                .select(room_bans::until)
                .first(&mut *$conn)
                .await
                .optional()?;
            let refusal = match ban {
                Some(until) if until.is_none_or(|until| until > now_at) => Refusal::Banned {
                    until: until.map(utc),
                },
                _ => Refusal::NotAMember,
            };
            reasons.insert((room, user), refusal);
        }
        reasons
    }};
}

/// What became of one input of a batch.
enum Outcome {
    /// Stored now, at this seq of its room.
    Inserted { seq: i64 },
    /// The same (user, client id) was already stored: this is that row.
    Existing(Box<StoredRow>),
    /// Repeats the (user, client id) of an earlier input of the same batch.
    SameAs(usize),
    /// Its author may not post in its room now.
    Refused(Refusal),
}

/// A stored message as the duplicate check reads it (no join: the author is
/// the input's own user).
#[derive(Queryable)]
struct StoredRow {
    id: i64,
    room_id: i64,
    seq: i64,
    user_id: i64,
    body: String,
    key_id: String,
    client_id: Option<String>,
    created_at: NaiveDateTime,
    edited_at: Option<NaiveDateTime>,
    deleted_at: Option<NaiveDateTime>,
    reply_to: Option<i64>,
    deleted_by: Option<i64>,
    change: Option<String>,
    target_seq: Option<i64>,
    reactions: i64,
    mls: Option<String>,
}

/// What the write transaction hands back.
pub(crate) struct Written {
    outcomes: Vec<Outcome>,
    /// The id of each new message, by (room, seq).
    ids: HashMap<(i64, i64), i64>,
    created_at: NaiveDateTime,
}

impl Written {
    /// How many messages the transaction inserted (neither resends nor
    /// refused ones).
    pub(crate) fn inserted(&self) -> usize {
        self.ids.len()
    }
}

/// `(original id, message id)` for each message of an imported batch that
/// was inserted.
fn import_records(
    batch: &[NewMessage],
    outcomes: &[Outcome],
    ids: &HashMap<(i64, i64), i64>,
    provenance: &[Provenance],
) -> Result<Vec<(i64, i64)>, StorageError> {
    let mut records = Vec::with_capacity(provenance.len());
    for ((message, outcome), provenance) in batch.iter().zip(outcomes).zip(provenance) {
        if let Outcome::Inserted { seq } = outcome {
            let id = inserted_id(ids, message.room_id.get(), *seq)?;
            records.push((provenance.original_id, id));
        }
    }
    Ok(records)
}

/// The id the insert returned for the message at `seq` of `room`.
fn inserted_id(ids: &HashMap<(i64, i64), i64>, room: i64, seq: i64) -> Result<i64, StorageError> {
    ids.get(&(room, seq)).copied().ok_or_else(|| {
        StorageError::Corrupt(format!(
            "the insert returned no id for room {room} seq {seq}"
        ))
    })
}

impl Store {
    /// Stores a batch of messages, possibly for several rooms, in one
    /// transaction, and returns one result per input, in input order.
    ///
    /// Each room's messages are numbered `last_seq + 1, + 2, ...` in input
    /// order while the room's counter row is locked, so seqs have no gaps
    /// and follow commit order, even with several writers in several
    /// processes. Rooms are locked in ascending id order, so two batches
    /// that share rooms cannot deadlock.
    ///
    /// A message whose (user, client id) is already stored is not stored
    /// again: its result is the original with `duplicate: true`. The same
    /// holds for a repeat within the batch, which resolves to the first.
    ///
    /// A message whose author is not a member of its room, or is muted
    /// there, is refused and not stored (the rest of the batch is), and a
    /// repeat of it within the batch gets the same refusal: the insert
    /// itself checks, after the rooms' counters are locked, so it sees every
    /// membership change committed before the batch (see
    /// `insert_messages.rs`).
    ///
    /// Fails with [`StorageError::NotFound`] when a room does not exist; then
    /// nothing of the batch is stored.
    pub async fn append_messages(
        &self,
        batch: Vec<NewMessage>,
    ) -> Result<Vec<AppendResult>, StorageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Encryption needs no lock, so it happens before the transaction
        // and keeps the time the counters are held short.
        let sealed: Vec<Sealed> = batch
            .iter()
            .map(|message| self.inner.keys.encrypt(message.body.as_str()))
            .collect();
        // A resend is rare (a client that reconnects sends its unacknowledged
        // messages again), so a batch is first written without looking its
        // client ids up. A (user, client id) that is stored already breaks
        // the unique index, the transaction rolls back, and the batch is
        // written again, this time looking every pair up. That try can
        // still meet a pair that a concurrent batch for *another* room
        // stored after the look-up (writers to the same room are serialized
        // by its counter); the next try finds that row. A plain insert
        // checks uniqueness in the same index descent that adds the entry;
        // `ON CONFLICT DO NOTHING` would probe the index once more first,
        // for every row.
        let mut resends = Resends::Unexpected;
        let mut attempt = 0;
        let written = loop {
            match self
                .write_batch(&batch, &sealed, resends, Origin::Live)
                .await
            {
                Err(StorageError::Conflict(_)) if attempt < CLIENT_ID_RETRIES => {
                    attempt += 1;
                    resends = Resends::LookUp;
                }
                other => break other?,
            }
        };
        let results = self.appended(batch, written)?;
        // Committed: rooms whose newest page is in memory grow by these.
        self.inner.recent.extend(
            results
                .iter()
                .filter_map(|result| result.as_ref().ok())
                .filter(|result| !result.duplicate)
                .map(|result| &result.message),
        );
        Ok(results)
    }

    /// The transaction of [`Store::append_messages`], and of
    /// [`Store::import_messages`] with [`Origin::Imported`].
    pub(crate) async fn write_batch(
        &self,
        batch: &[NewMessage],
        sealed: &[Sealed],
        resends: Resends,
        origin: Origin<'_>,
    ) -> Result<Written, StorageError> {
        let mut room_ids: Vec<i64> = batch.iter().map(|message| message.room_id.get()).collect();
        room_ids.sort_unstable();
        room_ids.dedup();
        // The (user, client id) pairs to look up: none on a first try.
        let mut pairs: Vec<(i64, &str)> = Vec::new();
        if resends == Resends::LookUp {
            pairs.extend(batch.iter().filter_map(|message| {
                let client_id = message.client_id.as_ref()?;
                Some((message.user_id.get(), client_id.as_str()))
            }));
            pairs.sort_unstable();
            pairs.dedup();
        }

        // The index entries of every text, hashed before the locks are
        // taken; only those of the messages stored are written.
        let entries: Vec<Vec<(i32, i64)>> = batch
            .iter()
            .map(|message| {
                // Ciphertext has no words to find.
                if message.mls {
                    return Vec::new();
                }
                crate::search::entries_of(self.inner.search.as_ref(), message.body.as_str())
            })
            .collect();

        write_transaction!(self, |conn| {
            // Chunks in ascending order keep the locks in id order.
            let mut counters: BTreeMap<i64, i64> = BTreeMap::new();
            for chunk in room_ids.chunks(ROOMS_PER_STATEMENT) {
                counters.extend(conn.lock_room_counters(chunk).await?);
            }
            if let Some(missing) = room_ids.iter().find(|room| !counters.contains_key(room)) {
                return Err(StorageError::NotFound(format!("room {missing}")));
            }

            // Looked up after the locks are held: a resend to the same room
            // that committed while we waited is visible now.
            let mut stored = stored_by_client_id!(conn, pairs);

            // What is not a resend is offered to the insert, which stores
            // the messages whose authors may post now (see
            // `insert_messages`): its statement runs after the locks, so it
            // sees every membership change to these rooms committed before
            // now, and none can commit until this transaction ends.
            let created_at = now();
            let mut first_in_batch: HashMap<(i64, &str), usize> = HashMap::new();
            let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
            let mut offered: Vec<usize> = Vec::with_capacity(batch.len());
            let mut rows = Vec::with_capacity(batch.len());
            for (index, (message, sealed)) in batch.iter().zip(sealed).enumerate() {
                let user = message.user_id.get();
                let client_id = message.client_id.as_ref().map(|id| id.as_str());
                if let Some(client_id) = client_id {
                    if let Some(row) = stored.remove(&(user, client_id.to_owned())) {
                        first_in_batch.insert((user, client_id), index);
                        outcomes.push(Some(Outcome::Existing(Box::new(row))));
                        continue;
                    }
                    if let Some(&first) = first_in_batch.get(&(user, client_id)) {
                        outcomes.push(Some(Outcome::SameAs(first)));
                        continue;
                    }
                    first_in_batch.insert((user, client_id), index);
                }
                outcomes.push(None);
                offered.push(index);
                rows.push(NewMessageRow {
                    room_id: message.room_id.get(),
                    base: 0,
                    user_id: user,
                    body: &sealed.token,
                    key_id: sealed.key_id.as_str(),
                    client_id,
                    reply_to: message.reply_to.map(Seq::get),
                    mls: message.mls.then_some(MlsKind::Application.as_str()),
                    created_at: match origin {
                        Origin::Live => created_at,
                        Origin::Imported(provenance) => provenance
                            .get(index)
                            .map_or(created_at, |provenance| provenance.created_at),
                    },
                });
            }

            let mut ids = HashMap::with_capacity(rows.len());
            let mut refused: BTreeSet<(i64, i64)> = BTreeSet::new();
            for (chunk, indices) in rows
                .chunks_mut(ROWS_PER_INSERT)
                .zip(offered.chunks(ROWS_PER_INSERT))
            {
                for row in chunk.iter_mut() {
                    row.base = counters[&row.room_id];
                }
                let inserted: Vec<(i64, i64, i64, i64)> = InsertMessages::new(chunk, created_at)
                    .get_results(conn)
                    .await?;
                // Standing is per room and author: every message of a pair
                // is stored, or none.
                let mut standing: HashSet<(i64, i64)> = HashSet::with_capacity(inserted.len());
                for (id, room, seq, user) in inserted {
                    ids.insert((room, seq), id);
                    standing.insert((room, user));
                }
                // The statement numbered the stored messages of each room
                // in input order from its counter: the same walk gives each
                // input its seq, and every seq must be one it returned.
                for (row, &index) in chunk.iter().zip(indices) {
                    if !standing.contains(&(row.room_id, row.user_id)) {
                        refused.insert((row.room_id, row.user_id));
                        continue;
                    }
                    let counter = counters.entry(row.room_id).or_default();
                    *counter += 1;
                    inserted_id(&ids, row.room_id, *counter)?;
                    outcomes[index] = Some(Outcome::Inserted { seq: *counter });
                }
            }

            // Rare: a message was left out. Say why its author may not post,
            // and answer a resend of a message stored while they still could
            // with that original.
            let mut reasons: HashMap<(i64, i64), Refusal> = HashMap::new();
            if !refused.is_empty() {
                reasons = refusals!(conn, refused, created_at);
                let mut resent: Vec<(i64, &str)> = Vec::new();
                if resends == Resends::Unexpected {
                    resent.extend(
                        batch
                            .iter()
                            .zip(&outcomes)
                            .filter_map(|(message, outcome)| {
                                let client_id = message.client_id.as_ref()?;
                                outcome
                                    .is_none()
                                    .then_some((message.user_id.get(), client_id.as_str()))
                            }),
                    );
                    resent.sort_unstable();
                    resent.dedup();
                }
                stored = stored_by_client_id!(conn, resent);
            }
            let mut settled = Vec::with_capacity(outcomes.len());
            for (message, outcome) in batch.iter().zip(outcomes) {
                if let Some(outcome) = outcome {
                    settled.push(outcome);
                    continue;
                }
                let user = message.user_id.get();
                if let Some(client_id) = &message.client_id
                    && let Some(row) = stored.remove(&(user, client_id.as_str().to_owned()))
                {
                    settled.push(Outcome::Existing(Box::new(row)));
                    continue;
                }
                let refusal = reasons
                    .get(&(message.room_id.get(), user))
                    .cloned()
                    .ok_or_else(|| {
                        StorageError::Corrupt("a message was neither stored nor refused".to_owned())
                    })?;
                settled.push(Outcome::Refused(refusal));
            }
            let outcomes = settled;

            // The index, in the same transaction: a message is findable
            // once it is acknowledged, and never without being stored.
            let mut index = Vec::new();
            for ((message, outcome), entries) in batch.iter().zip(&outcomes).zip(&entries) {
                if let Outcome::Inserted { seq } = outcome {
                    let room = message.room_id.get();
                    let message_id = inserted_id(&ids, room, *seq)?;
                    index.extend(entries.iter().map(|&(generation, term)| IndexEntry {
                        generation,
                        term,
                        room_id: room,
                        message_id,
                    }));
                }
            }
            conn.write_index(index, false).await?;

            if let Origin::Imported(provenance) = origin {
                let records = import_records(batch, &outcomes, &ids, provenance)?;
                for chunk in records.chunks(RECORDS_PER_STATEMENT) {
                    conn.record_imported_messages(chunk).await?;
                }
            }

            let touched: BTreeSet<i64> = ids.keys().map(|&(room, _)| room).collect();
            let advanced: Vec<(i64, i64)> = touched
                .into_iter()
                .map(|room| (room, counters[&room]))
                .collect();
            for chunk in advanced.chunks(ROOMS_PER_STATEMENT) {
                SetRoomCounters::new(chunk).execute(conn).await?;
            }

            Ok(Written {
                outcomes,
                ids,
                created_at,
            })
        })
    }

    /// Turns the transaction's outcomes into results, in input order.
    fn appended(
        &self,
        batch: Vec<NewMessage>,
        written: Written,
    ) -> Result<Vec<AppendResult>, StorageError> {
        let Written {
            outcomes,
            ids,
            created_at,
        } = written;
        let mut results: Vec<AppendResult> = Vec::with_capacity(batch.len());
        for (message, outcome) in batch.into_iter().zip(outcomes) {
            let appended = match outcome {
                Outcome::Refused(refusal) => {
                    results.push(Err(refusal));
                    continue;
                }
                Outcome::Inserted { seq: position } => {
                    let id = inserted_id(&ids, message.room_id.get(), position)?;
                    Appended {
                        message: Message {
                            id: MessageId(id),
                            room_id: message.room_id,
                            seq: seq(position, "messages.seq")?,
                            user_id: message.user_id,
                            username: message.username,
                            content: Some(message.body.into_string()),
                            client_id: message.client_id,
                            created_at: utc(created_at),
                            edited_at: None,
                            deleted_at: None,
                            deleted_by: None,
                            reply_to: message.reply_to,
                            change: None,
                            event: None,
                            reactions: 0,
                            mls: message.mls.then_some(MlsKind::Application),
                        },
                        duplicate: false,
                    }
                }
                Outcome::Existing(row) => {
                    let row = *row;
                    Appended {
                        message: self.open(MessageRow {
                            id: row.id,
                            room_id: row.room_id,
                            seq: row.seq,
                            user_id: row.user_id,
                            username: message.username.as_str().to_owned(),
                            body: row.body,
                            key_id: row.key_id,
                            client_id: row.client_id,
                            created_at: row.created_at,
                            edited_at: row.edited_at,
                            deleted_at: row.deleted_at,
                            event: None,
                            event_role: None,
                            event_until: None,
                            reply_to: row.reply_to,
                            deleted_by: row.deleted_by,
                            change: row.change,
                            target_seq: row.target_seq,
                            reactions: row.reactions,
                            mls: row.mls,
                        })?,
                        duplicate: true,
                    }
                }
                // A repeat gets its original's answer, refusal included.
                Outcome::SameAs(first) => match results.get(first) {
                    Some(Ok(original)) => Appended {
                        message: original.message.clone(),
                        duplicate: true,
                    },
                    Some(Err(refusal)) => {
                        let refusal = refusal.clone();
                        results.push(Err(refusal));
                        continue;
                    }
                    None => {
                        return Err(StorageError::Corrupt(
                            "a repeat points past its original".to_owned(),
                        ));
                    }
                },
            };
            results.push(Ok(appended));
        }
        Ok(results)
    }

    /// A page of `room`'s history; see [`Cursor`] and [`Page`]. `limit` is
    /// clamped to `1..=`[`MAX_PAGE`].
    ///
    /// A message that no key of the ring can decrypt comes back with
    /// `content: None` (and a warning in the log) rather than failing the
    /// page.
    ///
    /// A newest page comes from memory when the room's newest messages are
    /// there (see [`crate::RecentCache`]); it then costs one look-up of the
    /// room's newest seq instead of the page query.
    pub async fn history(
        &self,
        room: RoomId,
        cursor: Cursor,
        limit: i64,
    ) -> Result<Page, StorageError> {
        if matches!(cursor, Cursor::Latest) && self.inner.recent.enabled() {
            // No such room reads as an empty one, like the page query.
            let last_seq = self.last_seq(room).await?.unwrap_or(0);
            return self.newest_as_of(room, limit, last_seq).await;
        }
        self.page_from_database(room, cursor, limit.clamp(1, MAX_PAGE), false)
            .await
    }

    /// The newest page of `room`, like [`Store::history`] with
    /// [`Cursor::Latest`], for a caller that has read the room's newest seq
    /// already: [`Store::user_for_session_reading`] reads it in the query
    /// that checks the caller's session, so a page served from memory costs
    /// no further round trip.
    pub async fn newest_as_of(
        &self,
        room: RoomId,
        limit: i64,
        last_seq: i64,
    ) -> Result<Page, StorageError> {
        let limit = limit.clamp(1, MAX_PAGE);
        if last_seq == 0 {
            return Ok(Page {
                messages: Vec::new(),
                has_more: false,
            });
        }
        let cached = self.inner.recent.enabled();
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        if cached && let Some(page) = self.inner.recent.newest(room.get(), last_seq, wanted) {
            return Ok(page);
        }
        self.page_from_database(room, Cursor::Latest, limit, cached)
            .await
    }

    /// A page read from the database; `remember` keeps it in memory (a
    /// newest page, with the cache on).
    async fn page_from_database(
        &self,
        room: RoomId,
        cursor: Cursor,
        limit: i64,
        remember: bool,
    ) -> Result<Page, StorageError> {
        // One row more than asked tells whether there is more.
        let fetch = limit + 1;
        // Three fixed statements rather than one boxed query: a boxed query
        // has no static identity, so PostgreSQL would parse and plan it on
        // every page; these are prepared once per connection.
        let mut rows: Vec<MessageRow> = with_conn!(self, |conn| {
            let query = messages::table
                .inner_join(users::table)
                .filter(messages::room_id.eq(room.get()))
                .select(MESSAGE_COLUMNS)
                .limit(fetch);
            match cursor {
                Cursor::Latest => query.order(messages::seq.desc()).load(conn).await?,
                Cursor::Before(before) => {
                    query
                        .filter(messages::seq.lt(before.get()))
                        .order(messages::seq.desc())
                        .load(conn)
                        .await?
                }
                Cursor::After(after) => {
                    query
                        .filter(messages::seq.gt(after.get()))
                        .order(messages::seq.asc())
                        .load(conn)
                        .await?
                }
            }
        });
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        if !matches!(cursor, Cursor::After(_)) {
            rows.reverse();
        }
        let messages = rows
            .into_iter()
            .map(|row| self.open(row))
            .collect::<Result<Vec<Message>, StorageError>>()?;
        if remember {
            self.inner.recent.remember(room.get(), &messages);
        }
        Ok(Page { messages, has_more })
    }

    /// The newest `limit` messages of `room`, oldest first, in their current
    /// text, leaving out membership changes, changes to messages and deleted
    /// messages (the seed's history shows messages only).
    pub async fn latest(&self, room: RoomId, limit: i64) -> Result<Vec<Message>, StorageError> {
        let wanted = usize::try_from(limit.clamp(1, MAX_PAGE)).unwrap_or(1);
        let mut page = self.history(room, Cursor::Latest, limit).await?;
        let mut newest_first: Vec<Message> = Vec::with_capacity(wanted);
        loop {
            let oldest = <[Message]>::first(&page.messages).map(|message| message.seq);
            newest_first.extend(page.messages.into_iter().rev().filter(|message| {
                message.event.is_none() && message.change.is_none() && message.deleted_at.is_none()
            }));
            newest_first.truncate(wanted);
            match oldest {
                Some(oldest) if page.has_more && newest_first.len() < wanted => {
                    page = self.history(room, Cursor::Before(oldest), limit).await?;
                }
                _ => break,
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Decrypts a row into a [`Message`].
    pub(crate) fn open(&self, row: MessageRow) -> Result<Message, StorageError> {
        let key_id = KeyId::new(row.key_id);
        // A deleted message, and the edits of one, keep no text to decrypt;
        // nor does a deletion.
        let erased = row.deleted_at.is_some() || row.body.is_empty();
        let content = if erased {
            None
        } else {
            match self.inner.keys.decrypt_with_hint(&row.body, Some(&key_id)) {
                Ok(text) => Some(text),
                Err(error) => {
                    tracing::warn!(
                        message_id = row.id,
                        key_id = %key_id,
                        %error,
                        "a stored message cannot be decrypted; it is returned without content"
                    );
                    None
                }
            }
        };
        let (content, event) = match row.event {
            None => (content, None),
            Some(change) => {
                let (by, reason) = crate::governance::open_event_body(content.as_deref());
                let event = MemberEvent {
                    change: member_change(&change)?,
                    by,
                    role: row.event_role.as_deref().map(role).transpose()?,
                    until: row.event_until.map(utc),
                    reason,
                };
                (None, Some(event))
            }
        };
        Ok(Message {
            id: MessageId(row.id),
            room_id: RoomId(row.room_id),
            seq: seq(row.seq, "messages.seq")?,
            user_id: UserId(row.user_id),
            username: username(row.username)?,
            content,
            client_id: client_id(row.client_id)?,
            created_at: utc(row.created_at),
            edited_at: row.edited_at.map(utc),
            deleted_at: row.deleted_at.map(utc),
            deleted_by: row.deleted_by.map(UserId),
            reply_to: row
                .reply_to
                .map(|target| seq(target, "messages.reply_to"))
                .transpose()?,
            change: message_change(row.change.as_deref(), row.target_seq)?,
            event,
            reactions: row.reactions,
            mls: row
                .mls
                .as_deref()
                .map(|kind| {
                    MlsKind::from_str_opt(kind).ok_or_else(|| {
                        StorageError::Corrupt(format!("message {} has mls {kind:?}", row.id))
                    })
                })
                .transpose()?,
        })
    }
}

/// The change a row records, from its `change` and `target_seq` columns.
pub(crate) fn message_change(
    change: Option<&str>,
    target: Option<i64>,
) -> Result<Option<MessageChange>, StorageError> {
    let (change, target) = match (change, target) {
        (None, None) => return Ok(None),
        (Some(change), Some(target)) => (change, seq(target, "messages.target_seq")?),
        _ => {
            return Err(StorageError::Corrupt(
                "a change without its target, or a target without a change".to_owned(),
            ));
        }
    };
    match change {
        "edited" => Ok(Some(MessageChange::Edited { target })),
        "deleted" => Ok(Some(MessageChange::Deleted { target })),
        "reacted" => Ok(Some(MessageChange::Reacted { target })),
        "unreacted" => Ok(Some(MessageChange::Unreacted { target })),
        other => Err(StorageError::Corrupt(format!(
            "unknown message change {other:?}"
        ))),
    }
}
