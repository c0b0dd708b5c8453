//! Finding the stored messages of a batch's (user, client id) pairs.
//!
//! A batch resends nothing most of the time, but every message with a client
//! id must be looked up before it is stored. `user_id = ANY(users) AND
//! client_id = ANY(ids)` would probe the index for every combination of the
//! two lists (200 users × 512 ids is 100,000 probes, about 100 ms on
//! PostgreSQL); these statements probe it once per pair.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamp};
use diesel::sqlite::Sqlite;

use crate::schema::messages;

/// The columns of a stored message without its author's name, in the order
/// both statements select them.
const COLUMNS: [&str; 16] = [
    messages::id::NAME,
    messages::room_id::NAME,
    messages::seq::NAME,
    messages::user_id::NAME,
    messages::body::NAME,
    messages::key_id::NAME,
    messages::client_id::NAME,
    messages::created_at::NAME,
    messages::edited_at::NAME,
    messages::deleted_at::NAME,
    messages::reply_to::NAME,
    messages::deleted_by::NAME,
    messages::change::NAME,
    messages::target_seq::NAME,
    messages::reactions::NAME,
    messages::mls::NAME,
];

/// The messages stored under any of `pairs` (user id, client id).
///
/// PostgreSQL joins the index to two bound arrays (`unnest`); SQLite probes
/// it with a list of row values. Either way, one index probe per pair.
#[derive(Debug)]
pub(crate) struct StoredByClientId<'a> {
    pub(crate) users: Vec<i64>,
    pub(crate) client_ids: Vec<&'a str>,
}

impl<'a> StoredByClientId<'a> {
    pub(crate) fn new(pairs: &[(i64, &'a str)]) -> StoredByClientId<'a> {
        StoredByClientId {
            users: pairs.iter().map(|&(user, _)| user).collect(),
            client_ids: pairs.iter().map(|&(_, id)| id).collect(),
        }
    }

    fn push_columns<DB: diesel::backend::Backend>(
        out: &mut AstPass<'_, '_, DB>,
        table: &str,
    ) -> QueryResult<()> {
        for (index, column) in COLUMNS.into_iter().enumerate() {
            out.push_sql(if index == 0 { "SELECT " } else { ", " });
            out.push_sql(table);
            out.push_sql(".");
            out.push_identifier(column)?;
        }
        Ok(())
    }
}

impl QueryId for StoredByClientId<'_> {
    type QueryId = ();
    // SQLite's text depends on the number of pairs.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for StoredByClientId<'_> {
    type SqlType = (
        BigInt,
        BigInt,
        BigInt,
        BigInt,
        Text,
        Text,
        Nullable<Text>,
        Timestamp,
        Nullable<Timestamp>,
        Nullable<Timestamp>,
        Nullable<BigInt>,
        Nullable<BigInt>,
        Nullable<Text>,
        Nullable<BigInt>,
        BigInt,
        Nullable<Text>,
    );
}

impl QueryFragment<Pg> for StoredByClientId<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Each connection prepares this once and keeps the generic plan.
        // As a plain join, a plan made while `messages` is nearly empty (a
        // new deployment) hashes the pairs and scans the whole table, and
        // keeps doing so as the table grows. A lateral subquery with
        // `LIMIT 1` (the pair is unique) cannot be turned into that join:
        // it is one index probe per pair whatever the statistics said.
        Self::push_columns(&mut out, "m")?;
        out.push_sql(" FROM unnest(");
        out.push_bind_param::<Array<BigInt>, _>(&self.users)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.client_ids)?;
        out.push_sql(") AS k(user_id, client_id) CROSS JOIN LATERAL (SELECT * FROM messages");
        out.push_sql(" WHERE messages.user_id = k.user_id AND messages.client_id = k.client_id");
        out.push_sql(" LIMIT 1) AS m");
        Ok(())
    }
}

impl QueryFragment<Sqlite> for StoredByClientId<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        Self::push_columns(&mut out, "messages")?;
        out.push_sql(" FROM messages WHERE (user_id, client_id) IN (VALUES ");
        for (index, (user, client_id)) in self.users.iter().zip(&self.client_ids).enumerate() {
            out.push_sql(if index == 0 { "(" } else { ", (" });
            out.push_bind_param::<BigInt, _>(user)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(client_id)?;
            out.push_sql(")");
        }
        out.push_sql(")");
        Ok(())
    }
}
