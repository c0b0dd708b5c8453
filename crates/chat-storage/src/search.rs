//! The search index: written with the messages it indexes, changed by the
//! edits and deletions that change them, read by [`Store::search`], and
//! rebuilt by [`Store::reindex_step`].
//!
//! The index (`search_terms`) holds, per message, a keyed hash of each of
//! its terms ([`chat_domain::search::index_terms`]) under each search key
//! the store writes ([`SearchKeys::writing`]), tagged with the key's
//! generation. Nothing readable: no word, no prefix.
//!
//! The index only proposes candidates. A search decrypts each candidate and
//! matches the query against its text as it is now
//! ([`SearchQuery::find`]), so a hash collision, a prefix longer than the
//! index holds, an entry left behind by a race with `reindex`, or a message
//! deleted since it was indexed can never put a wrong message in the
//! results; it only costs a decryption.
//!
//! A search reads, for each room in its scope, the entries of one term
//! (the one with the fewest entries) newest message first, checks the other
//! terms by key, and stops after a page: the work per page is bounded by
//! the page size and the number of rooms, not by how common a word is.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use chat_crypto::{KeyId, SearchKey, SearchKeys};
use chat_domain::search::{Highlight, SearchQuery, index_terms};
use chat_domain::{MessageId, RoomId};
use chrono::NaiveDateTime;
use diesel::expression::Expression;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt};
use diesel::sqlite::Sqlite;
use diesel_async::RunQueryDsl;

use crate::model::Message;
use crate::room_counters::LockRoomCounters;
use crate::rows::{MESSAGE_COLUMNS, MessageRow, now};
use crate::schema::{messages, search_reindex, search_terms, users};
use crate::{StorageError, Store};

type SqlTypeOf<C> = <C as Expression>::SqlType;

/// How many index entries of a term are counted, at most, to pick the
/// term a search walks: enough to tell a rare word from a common one.
const COUNT_CAP: i64 = 5_000;

/// Rooms per candidate statement.
const ROOMS_PER_STATEMENT: usize = 100;

/// Rounds of candidates a page reads before it answers with what it found
/// and a cursor, when the index proposes messages the text does not match.
const MAX_ROUNDS: usize = 4;

/// Entries per insert statement (four values each; SQLite allows 32,766
/// bound values per statement).
pub(crate) const ENTRIES_PER_INSERT: usize = 8_000;

/// The most results a page holds.
pub const MAX_SEARCH_PAGE: usize = 100;

/// The most messages one [`Store::reindex_step`] indexes.
pub const MAX_REINDEX_BATCH: usize = 5_000;

/// One message a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The message as it is now (its current text).
    pub message: Message,
    /// Where the matching words are in its text.
    pub highlights: Vec<Highlight>,
}

/// A page of results, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Where the next page starts (pass it as `before`), or `None` when
    /// there is nothing older to find.
    pub next: Option<MessageId>,
}

/// How far the index of one generation has been built for messages that
/// were stored before it was written live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchIndexState {
    /// Every message is indexed.
    Complete,
    /// Messages with an id from `next_message_id` on were indexed as they
    /// were written or by `reindex`; older ones may not be.
    Partial { next_message_id: i64 },
    /// `reindex` never ran for it: messages stored before the server wrote
    /// this generation are not indexed.
    NotBuilt,
}

/// What one [`Store::reindex_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReindexProgress {
    /// The generation being built.
    pub generation: i32,
    /// Messages indexed by this step.
    pub indexed: u64,
    /// Every message with a smaller id is indexed.
    pub next_message_id: i64,
    /// The newest message id when the step ran.
    pub newest_message_id: i64,
    /// The walk reached the newest message.
    pub finished: bool,
}

/// The index entries of a message's text, under every key written; none
/// when search is off.
pub(crate) fn entries_of(keys: Option<&SearchKeys>, text: &str) -> Vec<(i32, i64)> {
    let Some(keys) = keys else {
        return Vec::new();
    };
    let terms = index_terms(text);
    let mut entries = Vec::with_capacity(terms.len() * 2);
    for key in keys.writing() {
        entries.extend(terms.iter().map(|term| (key.generation(), key.hash(term))));
    }
    entries
}

/// One row of `search_terms`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexEntry {
    pub(crate) generation: i32,
    pub(crate) term: i64,
    pub(crate) room_id: i64,
    pub(crate) message_id: i64,
}

/// A multi-row insert into `search_terms`: `unnest` of one array per
/// column on PostgreSQL (one prepared text whatever the number of rows), a
/// `VALUES` list on SQLite. With `ignore_existing`, entries already there
/// are skipped (`ON CONFLICT DO NOTHING`), for `reindex`.
pub(crate) struct InsertIndexEntries<'a> {
    entries: &'a [IndexEntry],
    ignore_existing: bool,
    generations: Vec<i32>,
    terms: Vec<i64>,
    room_ids: Vec<i64>,
    message_ids: Vec<i64>,
}

impl<'a> InsertIndexEntries<'a> {
    pub(crate) fn new(entries: &'a [IndexEntry], ignore_existing: bool) -> InsertIndexEntries<'a> {
        InsertIndexEntries {
            entries,
            ignore_existing,
            generations: entries.iter().map(|e| e.generation).collect(),
            terms: entries.iter().map(|e| e.term).collect(),
            room_ids: entries.iter().map(|e| e.room_id).collect(),
            message_ids: entries.iter().map(|e| e.message_id).collect(),
        }
    }

    fn push_head<DB: diesel::backend::Backend>(out: &mut AstPass<'_, '_, DB>) -> QueryResult<()> {
        out.push_sql("INSERT INTO ");
        search_terms::table.walk_ast(out.reborrow())?;
        out.push_sql(" (");
        for (index, column) in [
            search_terms::generation::NAME,
            search_terms::term::NAME,
            search_terms::room_id::NAME,
            search_terms::message_id::NAME,
        ]
        .into_iter()
        .enumerate()
        {
            if index > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
        }
        out.push_sql(") ");
        Ok(())
    }

    fn push_tail<DB: diesel::backend::Backend>(&self, out: &mut AstPass<'_, '_, DB>) {
        if self.ignore_existing {
            out.push_sql(" ON CONFLICT DO NOTHING");
        }
    }
}

impl QueryId for InsertIndexEntries<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for InsertIndexEntries<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Self::push_head(&mut out)?;
        out.push_sql("SELECT * FROM unnest(");
        out.push_bind_param::<Array<SqlTypeOf<search_terms::generation>>, _>(&self.generations)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<search_terms::term>>, _>(&self.terms)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<search_terms::room_id>>, _>(&self.room_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<search_terms::message_id>>, _>(&self.message_ids)?;
        out.push_sql(")");
        self.push_tail(&mut out);
        Ok(())
    }
}

impl QueryFragment<Sqlite> for InsertIndexEntries<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        // The text depends on the number of rows.
        out.unsafe_to_cache_prepared();
        Self::push_head(&mut out)?;
        out.push_sql("VALUES ");
        for (index, entry) in self.entries.iter().enumerate() {
            out.push_sql(if index == 0 { "(" } else { ", (" });
            out.push_bind_param::<SqlTypeOf<search_terms::generation>, _>(&entry.generation)?;
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<search_terms::term>, _>(&entry.term)?;
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<search_terms::room_id>, _>(&entry.room_id)?;
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<search_terms::message_id>, _>(&entry.message_id)?;
            out.push_sql(")");
        }
        self.push_tail(&mut out);
        Ok(())
    }
}

/// Inserts `entries` in statements of [`ENTRIES_PER_INSERT`], in key
/// order: entries that share a term then land on the same pages of the
/// index one after the other, instead of all over it.
macro_rules! insert_index_entries {
    ($conn:expr, $entries:expr, $ignore_existing:expr) => {{
        let mut entries = $entries;
        entries.sort_unstable_by_key(|e: &$crate::search::IndexEntry| {
            (e.generation, e.term, e.room_id, e.message_id)
        });
        for chunk in entries.chunks($crate::search::ENTRIES_PER_INSERT) {
            $crate::search::InsertIndexEntries::new(chunk, $ignore_existing)
                .execute(&mut *$conn)
                .await?;
        }
    }};
}
pub(crate) use insert_index_entries;

/// Deletes the entries `entries` of message `message_id` in room `room`:
/// one statement per generation, each probing the key once per term.
macro_rules! delete_index_entries {
    ($conn:expr, $room:expr, $message_id:expr, $entries:expr) => {{
        let mut by_generation: ::std::collections::BTreeMap<i32, Vec<i64>> =
            ::std::collections::BTreeMap::new();
        for (generation, term) in $entries {
            by_generation.entry(generation).or_default().push(term);
        }
        for (generation, terms) in by_generation {
            ::diesel::delete(
                $crate::schema::search_terms::table
                    .filter($crate::schema::search_terms::generation.eq(generation))
                    .filter($crate::schema::search_terms::term.eq_any(terms))
                    .filter($crate::schema::search_terms::room_id.eq($room))
                    .filter($crate::schema::search_terms::message_id.eq($message_id)),
            )
            .execute(&mut *$conn)
            .await?;
        }
    }};
}
pub(crate) use delete_index_entries;

/// A candidate message id from the index.
#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    message_id: i64,
}

/// How many entries a term has (up to [`COUNT_CAP`]).
#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    entries: i64,
}

/// `rooms` as a comma-separated list.
fn listed(rooms: &[i64]) -> String {
    let mut list = String::with_capacity(rooms.len() * 8);
    for (index, room) in rooms.iter().enumerate() {
        if index > 0 {
            list.push(',');
        }
        let _ = write!(list, "{room}");
    }
    list
}

/// `SELECT count(*) FROM (SELECT 1 ... LIMIT cap)`: how many entries of
/// `term` there are in `rooms`, counting no further than the cap.
///
/// The text holds integers only, written by this module, so there is
/// nothing to escape; written out, they let PostgreSQL plan each search for
/// its own terms.
fn count_sql(generation: i32, term: i64, rooms: &[i64]) -> String {
    format!(
        "SELECT count(*) AS entries FROM (SELECT 1 FROM search_terms \
         WHERE generation = {generation} AND term = {term} AND room_id IN ({}) \
         LIMIT {COUNT_CAP}) AS counted",
        listed(rooms)
    )
}

/// The newest `limit` messages below `before` of each room of `rooms` that
/// hold `walk` and every term of `check`, each room's read from `walk`'s
/// entries for it, newest first, stopping at `limit`. Integers only, as in
/// [`count_sql`].
///
/// PostgreSQL takes the rooms as an array and one lateral sub-select per
/// element: a plan of the same small size for any number of rooms (fifty
/// sub-selects written out took 10 ms to plan). SQLite, which has no
/// lateral joins and plans quickly, gets one sub-select per room.
fn candidates_sql(
    postgres: bool,
    generation: i32,
    walk: i64,
    check: &[i64],
    rooms: &[i64],
    before: i64,
    limit: usize,
) -> String {
    let walk_room = |sql: &mut String, room: &str| {
        let _ = write!(
            sql,
            "SELECT d.message_id FROM search_terms d \
             WHERE d.generation = {generation} AND d.term = {walk} AND d.room_id = {room} \
             AND d.message_id < {before}"
        );
        for term in check {
            let _ = write!(
                sql,
                " AND EXISTS (SELECT 1 FROM search_terms o WHERE o.generation = {generation} \
                 AND o.term = {term} AND o.room_id = d.room_id AND o.message_id = d.message_id)"
            );
        }
        let _ = write!(sql, " ORDER BY d.message_id DESC LIMIT {limit}");
    };
    let mut sql = String::with_capacity(rooms.len() * (200 + check.len() * 150));
    if postgres {
        let _ = write!(
            sql,
            "SELECT c.message_id FROM unnest(ARRAY[{}]::bigint[]) AS r(room_id) \
             CROSS JOIN LATERAL (",
            listed(rooms)
        );
        walk_room(&mut sql, "r.room_id");
        sql.push_str(") AS c");
        return sql;
    }
    for (index, room) in rooms.iter().enumerate() {
        if index > 0 {
            sql.push_str(" UNION ALL ");
        }
        sql.push_str("SELECT message_id FROM (");
        walk_room(&mut sql, &room.to_string());
        let _ = write!(sql, ") AS r{index}");
    }
    sql
}

impl Store {
    /// The keys the index is written and searched with; `None` when
    /// search is off (nothing is indexed, nothing found).
    pub fn search_keys(&self) -> Option<&SearchKeys> {
        self.inner.search.as_ref()
    }

    /// Finds the messages of `rooms` whose text contains every term of
    /// `query`, newest first: at most `limit` (capped at
    /// [`MAX_SEARCH_PAGE`]) older than `before`, with the cursor of the
    /// next page. The caller decides which rooms the reader may search.
    ///
    /// A page may hold fewer than `limit` results and still have a next
    /// one, when the index proposed many messages the text does not match
    /// (a long prefix, say): each page reads a bounded number of them.
    /// With search off, nothing is found.
    /// Deleted messages, membership events and changes are never found;
    /// an edited message is found by its current text only.
    pub async fn search(
        &self,
        rooms: &[RoomId],
        query: &SearchQuery,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<SearchPage, StorageError> {
        let limit = limit.clamp(1, MAX_SEARCH_PAGE);
        let empty = SearchPage {
            hits: Vec::new(),
            next: None,
        };
        let Some(keys) = &self.inner.search else {
            return Ok(empty);
        };
        if rooms.is_empty() {
            return Ok(empty);
        }
        let key = keys.current();
        let generation = key.generation();
        let mut terms: Vec<i64> = query
            .terms()
            .iter()
            .map(|term| key.hash(&term.index_term()))
            .collect();
        terms.sort_unstable();
        terms.dedup();
        let mut rooms: Vec<i64> = rooms.iter().map(|room| room.get()).collect();
        rooms.sort_unstable();
        rooms.dedup();
        let postgres = matches!(self.inner.pools, crate::store::Pools::Postgres(_));

        // The term with the fewest entries in these rooms is the one
        // walked; a term with none ends the search at once.
        let walk = if terms.len() == 1 {
            terms[0]
        } else {
            let mut fewest = (i64::MAX, terms[0]);
            for &term in &terms {
                let counted: Count = with_conn!(self, |conn| {
                    diesel::sql_query(count_sql(generation, term, &rooms))
                        .get_result(conn)
                        .await?
                });
                if counted.entries < fewest.0 {
                    fewest = (counted.entries, term);
                }
            }
            if fewest.0 == 0 {
                return Ok(empty);
            }
            fewest.1
        };
        let check: Vec<i64> = terms.iter().copied().filter(|t| *t != walk).collect();

        let mut hits = Vec::with_capacity(limit);
        let mut cursor = before.map_or(i64::MAX, MessageId::get);
        // Each round reads a few more candidates than results are missing,
        // as some may not match.
        for _ in 0..MAX_ROUNDS {
            let wanted = (limit - hits.len()) + 4;
            let mut candidates: Vec<i64> = Vec::new();
            for chunk in rooms.chunks(ROOMS_PER_STATEMENT) {
                let sql = candidates_sql(postgres, generation, walk, &check, chunk, cursor, wanted);
                let found: Vec<Candidate> =
                    with_conn!(self, |conn| diesel::sql_query(sql).load(conn).await?);
                candidates.extend(found.into_iter().map(|c| c.message_id));
            }
            candidates.sort_unstable_by(|a, b| b.cmp(a));
            // Every room gave its newest `wanted`; past the `wanted`-th
            // overall, a room may have more that were not read.
            let more = candidates.len() > wanted;
            candidates.truncate(wanted);
            let opened = self.open_candidates(&candidates).await?;
            for id in &candidates {
                cursor = *id;
                let Some(message) = opened.get(id) else {
                    continue;
                };
                let Some(text) = message.content.as_deref() else {
                    continue;
                };
                if let Some(highlights) = query.find(text) {
                    hits.push(SearchHit {
                        message: message.clone(),
                        highlights,
                    });
                    if hits.len() == limit {
                        let next =
                            (more || candidates.last() != Some(id)).then_some(MessageId(*id));
                        return Ok(SearchPage { hits, next });
                    }
                }
            }
            if !more && candidates.len() < wanted {
                return Ok(SearchPage { hits, next: None });
            }
        }
        Ok(SearchPage {
            hits,
            next: Some(MessageId(cursor)),
        })
    }

    /// The messages `ids` that can be found: not deleted, not events, not
    /// changes, by id.
    async fn open_candidates(&self, ids: &[i64]) -> Result<HashMap<i64, Message>, StorageError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<MessageRow> = with_conn!(self, |conn| {
            messages::table
                .inner_join(users::table)
                .filter(messages::id.eq_any(ids))
                .filter(messages::deleted_at.is_null())
                .filter(messages::event.is_null())
                .filter(messages::change.is_null())
                .select(MESSAGE_COLUMNS)
                .load(conn)
                .await?
        });
        let mut opened = HashMap::with_capacity(rows.len());
        for row in rows {
            let message = self.open(row)?;
            opened.insert(message.id.get(), message);
        }
        Ok(opened)
    }

    /// How far the index of `key` is built. A store whose database holds no
    /// message yet records the index as complete: every message it will
    /// hold is indexed as it is written.
    pub async fn search_index_state(
        &self,
        key: &SearchKey,
    ) -> Result<SearchIndexState, StorageError> {
        let generation = key.generation();
        let at = now();
        let state = write_transaction!(self, |conn| {
            let progress: Option<(i64, Option<NaiveDateTime>)> = search_reindex::table
                .find(generation)
                .select((search_reindex::next_message_id, search_reindex::finished_at))
                .first(conn)
                .await
                .optional()?;
            match progress {
                Some((_, Some(_))) => Ok(SearchIndexState::Complete),
                Some((next_message_id, None)) => Ok(SearchIndexState::Partial { next_message_id }),
                None => {
                    let any: Option<i64> = messages::table
                        .select(messages::id)
                        .first(conn)
                        .await
                        .optional()?;
                    if any.is_some() {
                        return Ok(SearchIndexState::NotBuilt);
                    }
                    diesel::insert_into(search_reindex::table)
                        .values((
                            search_reindex::generation.eq(generation),
                            search_reindex::next_message_id.eq(0),
                            search_reindex::started_at.eq(at),
                            search_reindex::finished_at.eq(Some(at)),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                    Ok(SearchIndexState::Complete)
                }
            }
        })?;
        Ok(state)
    }

    /// Indexes under `key` up to `batch` messages (capped at
    /// [`MAX_REINDEX_BATCH`]) from where the last step stopped, and records
    /// how far it got, so a rebuild can stop and resume. With `restart`,
    /// starts again from the oldest message.
    ///
    /// Safe while servers write: each step locks the rooms of its messages
    /// as an edit does, so it reads every text as it is; entries already
    /// there are kept.
    pub async fn reindex_step(
        &self,
        key: &SearchKey,
        batch: usize,
        restart: bool,
    ) -> Result<ReindexProgress, StorageError> {
        let batch = batch.clamp(1, MAX_REINDEX_BATCH);
        let generation = key.generation();
        let at = now();
        let keys = SearchKeys::new(key.clone(), None);
        let progress = write_transaction!(self, |conn| {
            let stored: Option<i64> = search_reindex::table
                .find(generation)
                .select(search_reindex::next_message_id)
                .first(conn)
                .await
                .optional()?;
            let from = match stored {
                Some(next) if !restart => next,
                _ => {
                    diesel::delete(search_reindex::table.find(generation))
                        .execute(conn)
                        .await?;
                    diesel::insert_into(search_reindex::table)
                        .values((
                            search_reindex::generation.eq(generation),
                            search_reindex::next_message_id.eq(0),
                            search_reindex::started_at.eq(at),
                        ))
                        .execute(conn)
                        .await?;
                    0
                }
            };
            let newest: Option<i64> = messages::table
                .select(diesel::dsl::max(messages::id))
                .first(conn)
                .await?;
            let newest = newest.unwrap_or(0);
            let walked: Vec<(i64, i64)> = messages::table
                .filter(messages::id.ge(from))
                .order(messages::id)
                .select((messages::id, messages::room_id))
                .limit(i64::try_from(batch).unwrap_or(i64::MAX))
                .load(conn)
                .await?;
            // The rooms are locked before their texts are read, so no
            // edit or deletion of them can slip between the read and the
            // insert.
            let rooms: BTreeSet<i64> = walked.iter().map(|(_, room)| *room).collect();
            let rooms: Vec<i64> = rooms.into_iter().collect();
            for chunk in rooms.chunks(ROOMS_PER_STATEMENT) {
                conn.lock_room_counters(chunk).await?;
            }
            let ids: Vec<i64> = walked.iter().map(|(id, _)| *id).collect();
            let texts: Vec<(i64, i64, String, String)> = messages::table
                .filter(messages::id.eq_any(&ids))
                .filter(messages::deleted_at.is_null())
                .filter(messages::event.is_null())
                .filter(messages::change.is_null())
                .filter(messages::mls.is_null())
                .select((
                    messages::id,
                    messages::room_id,
                    messages::body,
                    messages::key_id,
                ))
                .load(conn)
                .await?;
            let mut entries = Vec::new();
            let mut indexed = 0;
            for (id, room, body, key_id) in texts {
                let Some(text) = self.decrypt_body(&body, key_id) else {
                    continue;
                };
                indexed += 1;
                entries.extend(entries_of(Some(&keys), &text).into_iter().map(
                    |(generation, term)| IndexEntry {
                        generation,
                        term,
                        room_id: room,
                        message_id: id,
                    },
                ));
            }
            insert_index_entries!(conn, entries, true);
            let finished = walked.len() < batch;
            let next = walked.last().map_or(from, |(id, _)| id + 1);
            diesel::update(search_reindex::table.find(generation))
                .set((
                    search_reindex::next_message_id.eq(next),
                    search_reindex::finished_at.eq(finished.then_some(at)),
                ))
                .execute(conn)
                .await?;
            Ok(ReindexProgress {
                generation,
                indexed,
                next_message_id: next,
                newest_message_id: newest,
                finished,
            })
        })?;
        Ok(progress)
    }

    /// Deletes the entries of up to `batch` terms of a generation other
    /// than `keep`, and, once none is left, the records of such
    /// generations: what remains of an index after its key was replaced.
    /// Returns how many entries went; 0 when none is left.
    pub async fn drop_search_generations(
        &self,
        keep: &[i32],
        batch: usize,
    ) -> Result<u64, StorageError> {
        let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let deleted = with_conn!(self, |conn| {
            let other: Option<i32> = search_terms::table
                .filter(search_terms::generation.ne_all(keep))
                .select(search_terms::generation)
                .first(conn)
                .await
                .optional()?;
            let Some(other) = other else {
                diesel::delete(
                    search_reindex::table.filter(search_reindex::generation.ne_all(keep)),
                )
                .execute(conn)
                .await?;
                return Ok(0);
            };
            // The first `batch` entries of that generation, by key.
            let terms: Vec<i64> = search_terms::table
                .filter(search_terms::generation.eq(other))
                .select(search_terms::term)
                .distinct()
                .order(search_terms::term)
                .limit(batch)
                .load(conn)
                .await?;
            diesel::delete(
                search_terms::table
                    .filter(search_terms::generation.eq(other))
                    .filter(search_terms::term.eq_any(terms)),
            )
            .execute(conn)
            .await?
        });
        Ok(u64::try_from(deleted).unwrap_or(0))
    }

    /// The text of a stored body, or `None` when there is none (erased)
    /// or no key opens it.
    pub(crate) fn decrypt_body(&self, body: &str, key_id: String) -> Option<String> {
        if body.is_empty() {
            return None;
        }
        self.inner
            .keys
            .decrypt_with_hint(body, Some(&KeyId::new(key_id)))
            .ok()
    }
}
