//! The search index: written with the messages it indexes, changed by the
//! edits and deletions that change them, read by [`Store::search`], and
//! rebuilt by [`Store::reindex_step`].
//!
//! The index holds, per message, a keyed hash of each of its terms
//! ([`chat_domain::search::index_terms`]) under each search key the store
//! writes ([`SearchKeys::writing`]), tagged with the key's generation.
//! Nothing readable: no word, no prefix. How each backend stores and reads
//! it is in `search_index.rs`.
//!
//! The index only proposes candidates. A search decrypts each candidate and
//! matches the query against its text as it is now
//! ([`SearchQuery::find`]), so a hash collision, a prefix longer than the
//! index holds, an entry left behind by a race with `reindex`, or a message
//! deleted since it was indexed can never put a wrong message in the
//! results; it only costs a decryption. A page reads a few more candidates
//! than it lacks results, newest first (many more when a query term is not
//! exact, [`QueryTerm::is_exact`]), and stops once it has a page.

use std::collections::{BTreeSet, HashMap, VecDeque};

use chat_crypto::{KeyId, SearchKey, SearchKeys};
use chat_domain::search::{Highlight, QueryTerm, SearchQuery, for_each_index_term};
use chat_domain::{MessageId, RoomId};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::model::Message;
use crate::room_counters::LockRoomCounters;
use crate::rows::{MESSAGE_COLUMNS, MessageRow, now};
use crate::schema::{messages, search_reindex, users};
use crate::search_index::{Candidates, IndexEntry, Lookup, SearchIndex};
use crate::{StorageError, Store};

/// Rooms whose counters one statement of `reindex` locks.
const ROOMS_PER_STATEMENT: usize = 100;

/// Rounds of candidates a page reads before it answers with what it found
/// and a cursor, when the index proposes messages the text does not match.
const MAX_ROUNDS: usize = 4;

/// The most candidates one round reads.
const MAX_ROUND_CANDIDATES: usize = 800;

/// Candidates a round reads per missing result at first, when the index
/// finds more than the query matches (a word found by its prefix, a prefix
/// longer than the index holds); a round whose candidates matched less
/// than half the time reads [`SPREAD_GROWTH`] times as many per missing
/// result in the next.
const INEXACT_SPREAD: usize = 4;
const SPREAD_GROWTH: usize = 4;

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
    let mut entries = Vec::new();
    let mut hashes = Vec::new();
    for key in keys.writing() {
        hashes.clear();
        for_each_index_term(text, |term| hashes.push(key.hash_ref(term)));
        // A term met twice (a repeated word, a prefix two words share) is
        // one entry.
        hashes.sort_unstable();
        hashes.dedup();
        entries.extend(hashes.iter().map(|hash| (key.generation(), *hash)));
    }
    entries
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
        let mut lookup = Lookup::new(
            key.generation(),
            query
                .terms()
                .iter()
                .map(|term| key.hash(&term.index_term()))
                .collect(),
            rooms.iter().map(|room| room.get()).collect(),
        );
        if !with_conn!(self, |conn| conn.prepare(&mut lookup).await?) {
            return Ok(empty);
        }

        let mut hits = Vec::with_capacity(limit);
        let mut cursor = before.map_or(i64::MAX, MessageId::get);
        // Candidates the index gave that no round has read yet, newest
        // first; where the next lookup starts; and whether the index may
        // hold older ones. A lookup reads each term's whole list, so what
        // it gives beyond a round is kept for the next rather than looked
        // up again.
        let mut waiting: VecDeque<i64> = VecDeque::new();
        let mut looked_below = cursor;
        let mut index_more = true;
        // Each round reads a few more candidates than results are missing,
        // as some may not match; many more when the index is known to find
        // more than the query matches, or the last round matched little.
        let mut spread = if query.terms().iter().all(QueryTerm::is_exact) {
            1
        } else {
            INEXACT_SPREAD
        };
        for _ in 0..MAX_ROUNDS {
            let wanted = ((limit - hits.len()) * spread + 4).min(MAX_ROUND_CANDIDATES);
            if waiting.len() < wanted && index_more {
                let asked = wanted - waiting.len();
                let Candidates { ids, more } = with_conn!(self, |conn| {
                    conn.newest_candidates(&lookup, looked_below, asked).await?
                });
                // As many as asked: there may be more, whatever the
                // backend could tell.
                index_more = more || ids.len() >= asked;
                if let Some(last) = ids.last() {
                    looked_below = *last;
                }
                waiting.extend(ids);
            }
            let round: Vec<i64> = waiting.drain(..wanted.min(waiting.len())).collect();
            let found_before = hits.len();
            let opened = self.open_candidates(&lookup.rooms, &round).await?;
            for id in &round {
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
                        let rest = index_more || !waiting.is_empty() || round.last() != Some(id);
                        let next = rest.then_some(MessageId(*id));
                        return Ok(SearchPage { hits, next });
                    }
                }
            }
            if !index_more && waiting.is_empty() {
                return Ok(SearchPage { hits, next: None });
            }
            if (hits.len() - found_before) * 2 < round.len() {
                spread *= SPREAD_GROWTH;
            }
        }
        Ok(SearchPage {
            hits,
            next: Some(MessageId(cursor)),
        })
    }

    /// The messages `ids` of `rooms` that can be found: not deleted, not
    /// events, not changes, by id. The rooms are checked here, not left to
    /// the index: a key the index shares by chance with a room searched
    /// must not open a message of another room.
    async fn open_candidates(
        &self,
        rooms: &[i64],
        ids: &[i64],
    ) -> Result<HashMap<i64, Message>, StorageError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<MessageRow> = with_conn!(self, |conn| {
            messages::table
                .inner_join(users::table)
                .filter(messages::id.eq_any(ids))
                .filter(messages::room_id.eq_any(rooms))
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
            conn.write_index(entries, true).await?;
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

    /// Deletes up to `batch` pieces of the index of a generation other than
    /// `keep` (on PostgreSQL, messages' rows; on SQLite, terms' entries),
    /// and, once none is left, the records of such generations: what
    /// remains of an index after its key was replaced. Returns how many
    /// rows went; 0 when none is left.
    pub async fn drop_search_generations(
        &self,
        keep: &[i32],
        batch: usize,
    ) -> Result<u64, StorageError> {
        let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let deleted = with_conn!(self, |conn| {
            conn.drop_other_generations(keep, batch).await?
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
