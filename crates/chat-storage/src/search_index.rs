//! Where the search index lives on each backend, and how it is written,
//! erased and read. The rest of the search code (which terms a text has,
//! which rooms a reader may search, the check of each candidate against
//! its text) is the same for both, in `search.rs`.
//!
//! - **PostgreSQL** keeps one row per message and key
//!   (`search_documents`), its terms' hashes in an array under a GIN index,
//!   with two more elements: one naming the message's room
//!   ([`room_key`]) and one the block of [`BLOCK`] message ids it falls in
//!   ([`block_key`]). One row and one GIN insertion per message cost a
//!   fraction of the two dozen B-tree rows a message's terms would be as
//!   one row each: PostgreSQL buffers GIN insertions and merges them into
//!   the index in sorted bulk, where a common word's new entries share one
//!   visit of its posting tree. A search asks the GIN index for the
//!   messages that hold every term and one of the rooms, and intersects
//!   there. A search of one word looks first in the newest block below
//!   its cursor, then in the 8 and the 64 blocks before that, and only then
//!   without a block: a common word is found among the newest messages
//!   without reading all the others, and a rare one takes at most four
//!   lookups. A search of several words, whose messages together are
//!   seldom many, takes one lookup without a block. Each statement lists
//!   the messages it matched, which the search sorts itself; no statement
//!   asks PostgreSQL to choose between walking an order and intersecting
//!   terms, a choice its planner made badly.
//! - **SQLite** keeps one row per term (`search_terms`: generation, term,
//!   room, message; `WITHOUT ROWID`, so the table is its own B-tree).
//!   A search counts each term's entries in the rooms searched (up to
//!   [`COUNT_CAP`]) and walks the rarest, per room, newest message first,
//!   probing the others by key.

use std::fmt::Write as _;
use std::future::Future;

use diesel::expression::Expression;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt};
use diesel::sqlite::Sqlite;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::schema::{messages, search_documents, search_reindex, search_terms};
use crate::store::SqliteConn;

type SqlTypeOf<C> = <C as Expression>::SqlType;

/// Message ids per block (a power of two): the unit in which a search on
/// PostgreSQL reads back in time. Stored in the index: changing it takes a
/// `reindex`.
pub(crate) const BLOCK_BITS: u32 = 12;

/// Message ids per block.
pub(crate) const BLOCK: i64 = 1 << BLOCK_BITS;

/// How many blocks each lookup of a search on PostgreSQL covers, newest
/// first; after these, one lookup covers everything older.
const BLOCK_STEPS: [i64; 3] = [1, 8, 64];

/// How many index entries of a term are counted, at most, to pick the
/// term a search on SQLite walks: enough to tell a rare word from a common
/// one.
const COUNT_CAP: i64 = 5_000;

/// The most candidates one PostgreSQL lookup gives, however many it read.
const MAX_CANDIDATES: usize = 4_096;

/// Rooms per candidate statement on SQLite.
const ROOMS_PER_STATEMENT: usize = 100;

/// Entries per insert statement on SQLite (four values each; SQLite allows
/// 32,766 bound values per statement). PostgreSQL binds arrays, so a batch
/// is one statement whatever its size.
const ENTRIES_PER_INSERT: usize = 8_000;

/// One term of one message under one key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexEntry {
    pub(crate) generation: i32,
    pub(crate) term: i64,
    pub(crate) room_id: i64,
    pub(crate) message_id: i64,
}

/// What a search looks up: messages of `rooms` holding every one of
/// `terms` under the key of `generation`. Terms and rooms are sorted and
/// distinct.
#[derive(Debug)]
pub(crate) struct Lookup {
    pub(crate) generation: i32,
    pub(crate) terms: Vec<i64>,
    pub(crate) rooms: Vec<i64>,
    /// SQLite: the term walked (the rarest), once [`SearchIndex::prepare`]
    /// chose it.
    walk: Option<i64>,
}

impl Lookup {
    pub(crate) fn new(generation: i32, mut terms: Vec<i64>, mut rooms: Vec<i64>) -> Lookup {
        terms.sort_unstable();
        terms.dedup();
        rooms.sort_unstable();
        rooms.dedup();
        Lookup {
            generation,
            terms,
            rooms,
            walk: None,
        }
    }
}

/// Message ids the index proposes, newest first.
#[derive(Debug)]
pub(crate) struct Candidates {
    /// The number asked for, or fewer when there are no more; possibly
    /// more (PostgreSQL gives every candidate of the blocks it read, up to
    /// [`MAX_CANDIDATES`]).
    pub(crate) ids: Vec<i64>,
    /// Older candidates than the last of `ids` may exist.
    pub(crate) more: bool,
}

/// The search index of one backend: written with the messages (in their
/// transaction), erased with them, and read by `Store::search`.
pub(crate) trait SearchIndex {
    /// Writes `entries`. With `ignore_existing`, what is already indexed for
    /// a message under a key is kept (for `reindex`, which may meet the
    /// live writes).
    fn write_index(
        &mut self,
        entries: Vec<IndexEntry>,
        ignore_existing: bool,
    ) -> impl Future<Output = QueryResult<()>> + Send;

    /// Erases what is indexed for message `message_id` of room `room`,
    /// whose text had the entries `entries` (under every key written).
    fn erase_message_index(
        &mut self,
        room: i64,
        message_id: i64,
        entries: Vec<(i32, i64)>,
    ) -> impl Future<Output = QueryResult<()>> + Send;

    /// Erases what is indexed for the messages of room `room`.
    fn erase_room_index(&mut self, room: i64) -> impl Future<Output = QueryResult<()>> + Send;

    /// Erases what is indexed for the messages `user` wrote.
    fn erase_author_index(&mut self, user: i64) -> impl Future<Output = QueryResult<()>> + Send;

    /// Erases up to `batch` pieces (rows of one generation) of what is
    /// indexed under generations other than `keep`; once none is left, the
    /// reindex records of those generations. Returns how many rows went.
    fn drop_other_generations(
        &mut self,
        keep: &[i32],
        batch: i64,
    ) -> impl Future<Output = QueryResult<usize>> + Send;

    /// Gets ready to look `lookup` up; `false` when it can find nothing.
    fn prepare(&mut self, lookup: &mut Lookup) -> impl Future<Output = QueryResult<bool>> + Send;

    /// The newest `wanted` candidates of `lookup` with an id below
    /// `before`, or more (see [`Candidates::ids`]).
    fn newest_candidates(
        &mut self,
        lookup: &Lookup,
        before: i64,
        wanted: usize,
    ) -> impl Future<Output = QueryResult<Candidates>> + Send;
}

/// SplitMix64's finaliser: spreads every bit of `x` over the result.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The element of `search_documents.terms` naming room `room`. A term's
/// hash is keyed and this is not, so the two collide with odds of one in
/// 2^64, and a collision only proposes a candidate that the search's check
/// of its text then drops.
pub(crate) fn room_key(room: i64) -> i64 {
    const DOMAIN: u64 = 0x524f_4f4d_5f5f_4944;
    i64::from_ne_bytes(mix(mix(room as u64) ^ DOMAIN).to_ne_bytes())
}

/// The element of `search_documents.terms` naming block `block` of
/// message ids; as for [`room_key`], a collision costs a decryption.
///
/// A block's key is shared by all rooms. A key per room and block would
/// make each list short, but a lookup would then list rooms times blocks
/// keys, and GIN pays for every key listed: measured on 1,000,000 messages,
/// searches of 50 rooms took 250 ms instead of 30.
pub(crate) fn block_key(block: i64) -> i64 {
    const DOMAIN: u64 = 0x424c_4f43_4b5f_4944;
    i64::from_ne_bytes(mix(mix(block as u64) ^ DOMAIN).to_ne_bytes())
}

/// A comma-separated list of integers.
fn listed(values: impl IntoIterator<Item = i64>) -> String {
    let mut list = String::new();
    for (index, value) in values.into_iter().enumerate() {
        if index > 0 {
            list.push(',');
        }
        let _ = write!(list, "{value}");
    }
    list
}

/// A candidate message id from the index.
#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    message_id: i64,
}

// ---------------------------------------------------------------- PostgreSQL

/// `INSERT INTO search_documents (message_id, generation, room_id, terms)
/// SELECT d.message_id, d.generation, d.room_id, ($4)[d.first:d.last] FROM
/// unnest($1, $2, $3, $5, $6) AS d(...)`: every message's terms in one
/// array, each document a slice of it, so the text is the same for any
/// batch and is prepared once per connection.
struct InsertDocuments {
    message_ids: Vec<i64>,
    generations: Vec<i32>,
    room_ids: Vec<i64>,
    terms: Vec<i64>,
    firsts: Vec<i32>,
    lasts: Vec<i32>,
    ignore_existing: bool,
}

impl InsertDocuments {
    /// The documents of `entries`, which are sorted by message and
    /// generation.
    fn new(entries: &[IndexEntry], ignore_existing: bool) -> QueryResult<InsertDocuments> {
        let mut documents = InsertDocuments {
            message_ids: Vec::new(),
            generations: Vec::new(),
            room_ids: Vec::new(),
            terms: Vec::with_capacity(entries.len() + entries.len() / 8),
            firsts: Vec::new(),
            lasts: Vec::new(),
            ignore_existing,
        };
        let position = |terms: &Vec<i64>| {
            i32::try_from(terms.len() + 1)
                .map_err(|_| diesel::result::Error::QueryBuilderError("too many terms".into()))
        };
        for document in
            entries.chunk_by(|a, b| (a.message_id, a.generation) == (b.message_id, b.generation))
        {
            let first = document[0];
            documents.message_ids.push(first.message_id);
            documents.generations.push(first.generation);
            documents.room_ids.push(first.room_id);
            documents.firsts.push(position(&documents.terms)?);
            documents
                .terms
                .extend(document.iter().map(|entry| entry.term));
            documents.terms.push(room_key(first.room_id));
            documents
                .terms
                .push(block_key(first.message_id >> BLOCK_BITS));
            documents.lasts.push(position(&documents.terms)? - 1);
        }
        Ok(documents)
    }
}

impl QueryId for InsertDocuments {
    type QueryId = ();
    // Cached by its text, which is one of two.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for InsertDocuments {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("INSERT INTO ");
        search_documents::table.walk_ast(out.reborrow())?;
        out.push_sql(" (");
        let columns = [
            search_documents::message_id::NAME,
            search_documents::generation::NAME,
            search_documents::room_id::NAME,
            search_documents::terms::NAME,
        ];
        for (index, column) in columns.into_iter().enumerate() {
            if index > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
        }
        out.push_sql(") SELECT d.message_id, d.generation, d.room_id, (");
        out.push_bind_param::<SqlTypeOf<search_documents::terms>, _>(&self.terms)?;
        out.push_sql(")[d.first:d.last] FROM unnest(");
        out.push_bind_param::<Array<SqlTypeOf<search_documents::message_id>>, _>(
            &self.message_ids,
        )?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<search_documents::generation>>, _>(
            &self.generations,
        )?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<search_documents::room_id>>, _>(&self.room_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<diesel::sql_types::Integer>, _>(&self.firsts)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<diesel::sql_types::Integer>, _>(&self.lasts)?;
        out.push_sql(") AS d(message_id, generation, room_id, first, last)");
        if self.ignore_existing {
            out.push_sql(" ON CONFLICT DO NOTHING");
        }
        Ok(())
    }
}

/// The messages of `lookup` below `before`, in the blocks `blocks` (a
/// range, newest last) or in any block, as one statement of integers
/// written by this module (nothing to escape), so that PostgreSQL plans it
/// for its own keys.
fn documents_sql(lookup: &Lookup, before: i64, blocks: Option<(i64, i64)>) -> String {
    let mut sql = format!(
        "SELECT message_id FROM search_documents WHERE generation = {} AND message_id < {before}",
        lookup.generation
    );
    // Every term, and one of the rooms.
    let rooms = lookup.rooms.iter().map(|&room| room_key(room));
    match lookup.rooms[..] {
        [room] => {
            let every = lookup.terms.iter().copied().chain([room_key(room)]);
            let _ = write!(sql, " AND terms @> ARRAY[{}]::bigint[]", listed(every));
        }
        _ => {
            let every = lookup.terms.iter().copied();
            let _ = write!(
                sql,
                " AND terms @> ARRAY[{}]::bigint[] AND terms && ARRAY[{}]::bigint[]",
                listed(every),
                listed(rooms)
            );
        }
    }
    if let Some((oldest, newest)) = blocks {
        let _ = write!(
            sql,
            " AND terms && ARRAY[{}]::bigint[]",
            listed((oldest..=newest).map(block_key))
        );
    }
    sql
}

impl SearchIndex for AsyncPgConnection {
    async fn write_index(
        &mut self,
        mut entries: Vec<IndexEntry>,
        ignore_existing: bool,
    ) -> QueryResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // By message and key, which is also the table's key order.
        entries.sort_unstable_by_key(|e| (e.message_id, e.generation, e.term));
        InsertDocuments::new(&entries, ignore_existing)?
            .execute(self)
            .await?;
        Ok(())
    }

    async fn erase_message_index(
        &mut self,
        _room: i64,
        message_id: i64,
        _entries: Vec<(i32, i64)>,
    ) -> QueryResult<()> {
        diesel::delete(search_documents::table.filter(search_documents::message_id.eq(message_id)))
            .execute(self)
            .await?;
        Ok(())
    }

    async fn erase_room_index(&mut self, room: i64) -> QueryResult<()> {
        diesel::delete(search_documents::table.filter(search_documents::room_id.eq(room)))
            .execute(self)
            .await?;
        Ok(())
    }

    async fn erase_author_index(&mut self, user: i64) -> QueryResult<()> {
        diesel::delete(
            search_documents::table.filter(
                search_documents::message_id.eq_any(
                    messages::table
                        .filter(messages::user_id.eq(user))
                        .select(messages::id),
                ),
            ),
        )
        .execute(self)
        .await?;
        Ok(())
    }

    async fn drop_other_generations(&mut self, keep: &[i32], batch: i64) -> QueryResult<usize> {
        let doomed: Vec<(i64, i32)> = search_documents::table
            .filter(search_documents::generation.ne_all(keep))
            .order(search_documents::message_id)
            .select((search_documents::message_id, search_documents::generation))
            .limit(batch)
            .load(self)
            .await?;
        if doomed.is_empty() {
            diesel::delete(search_reindex::table.filter(search_reindex::generation.ne_all(keep)))
                .execute(self)
                .await?;
            return Ok(0);
        }
        let mut deleted = 0;
        for (generation, rows) in by_generation(doomed) {
            deleted += diesel::delete(
                search_documents::table
                    .filter(search_documents::generation.eq(generation))
                    .filter(search_documents::message_id.eq_any(rows)),
            )
            .execute(self)
            .await?;
        }
        Ok(deleted)
    }

    async fn prepare(&mut self, _lookup: &mut Lookup) -> QueryResult<bool> {
        Ok(true)
    }

    async fn newest_candidates(
        &mut self,
        lookup: &Lookup,
        before: i64,
        wanted: usize,
    ) -> QueryResult<Candidates> {
        // Without a cursor, the newest block is the newest message's.
        let mut below = before;
        if below == i64::MAX {
            let newest: Option<i64> = search_documents::table
                .select(diesel::dsl::max(search_documents::message_id))
                .first(self)
                .await?;
            below = newest.map_or(0, |newest| newest + 1);
        }
        let mut found: Vec<i64> = Vec::new();
        // Every lookup reads each term's whole list in the index, whatever
        // it is narrowed to; narrowing by blocks pays when a single word
        // matches many messages. Several words together seldom do, and one
        // lookup of all their messages is then the cheapest.
        let blocks: &[i64] = if lookup.terms.len() > 1 {
            &[]
        } else {
            &BLOCK_STEPS
        };
        let mut steps = blocks.iter().map(Some).chain(std::iter::once(None));
        while below > 0 && found.len() < wanted {
            let Some(step) = steps.next() else {
                break;
            };
            let newest = (below - 1) >> BLOCK_BITS;
            let blocks = step.map(|count| ((newest - count + 1).max(0), newest));
            let sql = documents_sql(lookup, below, blocks);
            let matched: Vec<Candidate> = diesel::sql_query(sql).load(self).await?;
            found.extend(matched.into_iter().map(|c| c.message_id));
            below = blocks.map_or(0, |(oldest, _)| oldest * BLOCK);
        }
        // Every candidate from `below` up was read: all are given, as the
        // next round would otherwise look them up again.
        found.sort_unstable_by(|a, b| b.cmp(a));
        let more = below > 0 || found.len() > MAX_CANDIDATES;
        found.truncate(MAX_CANDIDATES.max(wanted));
        Ok(Candidates { ids: found, more })
    }
}

/// `(generation, message ids)` of `rows`, by generation.
fn by_generation<T>(rows: impl IntoIterator<Item = (T, i32)>) -> Vec<(i32, Vec<T>)> {
    let mut grouped: std::collections::BTreeMap<i32, Vec<T>> = std::collections::BTreeMap::new();
    for (row, generation) in rows {
        grouped.entry(generation).or_default().push(row);
    }
    grouped.into_iter().collect()
}

// -------------------------------------------------------------------- SQLite

/// A multi-row insert into `search_terms`: a `VALUES` list.
struct InsertEntries<'a> {
    entries: &'a [IndexEntry],
    ignore_existing: bool,
}

impl QueryId for InsertEntries<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Sqlite> for InsertEntries<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        // The text depends on the number of rows.
        out.unsafe_to_cache_prepared();
        out.push_sql("INSERT INTO ");
        search_terms::table.walk_ast(out.reborrow())?;
        out.push_sql(" (");
        let columns = [
            search_terms::generation::NAME,
            search_terms::term::NAME,
            search_terms::room_id::NAME,
            search_terms::message_id::NAME,
        ];
        for (index, column) in columns.into_iter().enumerate() {
            if index > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
        }
        out.push_sql(") VALUES ");
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
        if self.ignore_existing {
            out.push_sql(" ON CONFLICT DO NOTHING");
        }
        Ok(())
    }
}

/// How many entries `term` has in `rooms`, counting no further than
/// [`COUNT_CAP`].
#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    entries: i64,
}

fn count_sql(generation: i32, term: i64, rooms: &[i64]) -> String {
    format!(
        "SELECT count(*) AS entries FROM (SELECT 1 FROM search_terms \
         WHERE generation = {generation} AND term = {term} AND room_id IN ({}) \
         LIMIT {COUNT_CAP}) AS counted",
        listed(rooms.iter().copied())
    )
}

/// The newest `limit` messages below `before` of each room of `rooms` that
/// hold `walk` and every other term of `lookup`, each room's read from
/// `walk`'s entries for it, newest first: one sub-select per room.
fn entries_sql(lookup: &Lookup, walk: i64, rooms: &[i64], before: i64, limit: usize) -> String {
    let generation = lookup.generation;
    let mut sql = String::with_capacity(rooms.len() * (200 + lookup.terms.len() * 150));
    for (index, room) in rooms.iter().enumerate() {
        if index > 0 {
            sql.push_str(" UNION ALL ");
        }
        let _ = write!(
            sql,
            "SELECT message_id FROM (SELECT d.message_id FROM search_terms d \
             WHERE d.generation = {generation} AND d.term = {walk} AND d.room_id = {room} \
             AND d.message_id < {before}"
        );
        for term in lookup.terms.iter().filter(|term| **term != walk) {
            let _ = write!(
                sql,
                " AND EXISTS (SELECT 1 FROM search_terms o WHERE o.generation = {generation} \
                 AND o.term = {term} AND o.room_id = d.room_id AND o.message_id = d.message_id)"
            );
        }
        let _ = write!(
            sql,
            " ORDER BY d.message_id DESC LIMIT {limit}) AS r{index}"
        );
    }
    sql
}

impl SearchIndex for SqliteConn {
    async fn write_index(
        &mut self,
        mut entries: Vec<IndexEntry>,
        ignore_existing: bool,
    ) -> QueryResult<()> {
        // In key order: entries that share a term land on the same pages
        // one after the other, instead of all over the B-tree.
        entries.sort_unstable_by_key(|e| (e.generation, e.term, e.room_id, e.message_id));
        for chunk in entries.chunks(ENTRIES_PER_INSERT) {
            InsertEntries {
                entries: chunk,
                ignore_existing,
            }
            .execute(&mut *self)
            .await?;
        }
        Ok(())
    }

    async fn erase_message_index(
        &mut self,
        room: i64,
        message_id: i64,
        entries: Vec<(i32, i64)>,
    ) -> QueryResult<()> {
        // One statement per generation, each probing the key once per term.
        for (generation, terms) in by_generation(entries.into_iter().map(|(g, t)| (t, g))) {
            diesel::delete(
                search_terms::table
                    .filter(search_terms::generation.eq(generation))
                    .filter(search_terms::term.eq_any(terms))
                    .filter(search_terms::room_id.eq(room))
                    .filter(search_terms::message_id.eq(message_id)),
            )
            .execute(&mut *self)
            .await?;
        }
        Ok(())
    }

    async fn erase_room_index(&mut self, room: i64) -> QueryResult<()> {
        // The entries are keyed by term first, so this reads the index once.
        diesel::delete(search_terms::table.filter(search_terms::room_id.eq(room)))
            .execute(self)
            .await?;
        Ok(())
    }

    async fn erase_author_index(&mut self, user: i64) -> QueryResult<()> {
        diesel::delete(
            search_terms::table.filter(
                search_terms::message_id.eq_any(
                    messages::table
                        .filter(messages::user_id.eq(user))
                        .select(messages::id),
                ),
            ),
        )
        .execute(self)
        .await?;
        Ok(())
    }

    async fn drop_other_generations(&mut self, keep: &[i32], batch: i64) -> QueryResult<usize> {
        let other: Option<i32> = search_terms::table
            .filter(search_terms::generation.ne_all(keep))
            .select(search_terms::generation)
            .first(&mut *self)
            .await
            .optional()?;
        let Some(other) = other else {
            diesel::delete(search_reindex::table.filter(search_reindex::generation.ne_all(keep)))
                .execute(&mut *self)
                .await?;
            return Ok(0);
        };
        // The entries of the first `batch` terms of that generation.
        let terms: Vec<i64> = search_terms::table
            .filter(search_terms::generation.eq(other))
            .select(search_terms::term)
            .distinct()
            .order(search_terms::term)
            .limit(batch)
            .load(&mut *self)
            .await?;
        diesel::delete(
            search_terms::table
                .filter(search_terms::generation.eq(other))
                .filter(search_terms::term.eq_any(terms)),
        )
        .execute(&mut *self)
        .await
    }

    async fn prepare(&mut self, lookup: &mut Lookup) -> QueryResult<bool> {
        // The term with the fewest entries in these rooms is the one
        // walked; a term with none ends the search at once.
        if let [only] = lookup.terms[..] {
            lookup.walk = Some(only);
            return Ok(true);
        }
        let mut fewest: Option<(i64, i64)> = None;
        for &term in &lookup.terms {
            let counted: Count =
                diesel::sql_query(count_sql(lookup.generation, term, &lookup.rooms))
                    .get_result(&mut *self)
                    .await?;
            if fewest.is_none_or(|(entries, _)| counted.entries < entries) {
                fewest = Some((counted.entries, term));
            }
        }
        lookup.walk = fewest.map(|(_, term)| term);
        Ok(fewest.is_some_and(|(entries, _)| entries > 0))
    }

    async fn newest_candidates(
        &mut self,
        lookup: &Lookup,
        before: i64,
        wanted: usize,
    ) -> QueryResult<Candidates> {
        let Some(walk) = lookup.walk else {
            return Ok(Candidates {
                ids: Vec::new(),
                more: false,
            });
        };
        let mut found: Vec<i64> = Vec::new();
        for chunk in lookup.rooms.chunks(ROOMS_PER_STATEMENT) {
            let sql = entries_sql(lookup, walk, chunk, before, wanted);
            let matched: Vec<Candidate> = diesel::sql_query(sql).load(&mut *self).await?;
            found.extend(matched.into_iter().map(|c| c.message_id));
        }
        found.sort_unstable_by(|a, b| b.cmp(a));
        // Every room gave its newest `wanted`; past the `wanted`-th
        // overall, a room may have more that were not read.
        let more = found.len() > wanted;
        found.truncate(wanted);
        Ok(Candidates { ids: found, more })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_and_blocks_have_keys_of_their_own() {
        let keys: std::collections::BTreeSet<i64> = (0..1_000)
            .map(room_key)
            .chain((0..1_000).map(block_key))
            .collect();
        assert_eq!(keys.len(), 2_000);
        assert_eq!(room_key(7), room_key(7));
    }

    #[test]
    fn documents_are_slices_of_one_array_with_their_block() {
        let entry = |message_id, generation, term| IndexEntry {
            generation,
            term,
            room_id: 3,
            message_id,
        };
        let entries = [
            entry(5, 1, 10),
            entry(5, 1, 11),
            entry(5, 2, 12),
            entry(BLOCK + 1, 1, 13),
        ];
        let documents = InsertDocuments::new(&entries, false).expect("documents");
        assert_eq!(documents.message_ids, [5, 5, BLOCK + 1]);
        assert_eq!(documents.generations, [1, 2, 1]);
        assert_eq!(documents.firsts, [1, 5, 8]);
        assert_eq!(documents.lasts, [4, 7, 10]);
        assert_eq!(
            documents.terms,
            [
                10,
                11,
                room_key(3),
                block_key(0),
                12,
                room_key(3),
                block_key(0),
                13,
                room_key(3),
                block_key(1),
            ]
        );
    }
}
