//! The multi-row `INSERT ... RETURNING` into `messages` of a batch, run
//! through diesel-async on both backends.
//!
//! diesel's own `insert_into(messages).values(&rows)` builds a multi-row
//! statement for PostgreSQL, but for SQLite only on the synchronous
//! `SqliteConnection`, not through diesel-async's `SyncConnectionWrapper`.
//! So this query is spelled out here, once per backend:
//!
//! - PostgreSQL takes each column as one array and inserts from `unnest`.
//!   The text is the same whatever the number of rows, so it is prepared
//!   once per connection and never parsed or planned again, and a batch of
//!   1,000 messages is 7 bind parameters rather than 7,000.
//! - SQLite, which has no arrays, gets one `VALUES` tuple per row.
//!
//! Column names and bind types come from the schema.

use chrono::NaiveDateTime;
use diesel::expression::Expression;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::Array;
use diesel::sqlite::Sqlite;

use crate::rows::NewMessageRow;
use crate::schema::messages;

type SqlTypeOf<C> = <C as Expression>::SqlType;

/// The inserted columns, in statement order.
const COLUMNS: [&str; 7] = [
    messages::room_id::NAME,
    messages::seq::NAME,
    messages::user_id::NAME,
    messages::body::NAME,
    messages::key_id::NAME,
    messages::client_id::NAME,
    messages::created_at::NAME,
];

/// `INSERT INTO messages (room_id, seq, user_id, body, key_id, client_id,
/// created_at) ... RETURNING id, room_id, seq`.
pub(crate) struct InsertMessages<'a> {
    /// The rows, as SQLite binds them.
    rows: &'a [NewMessageRow<'a>],
    /// The same rows column by column, as PostgreSQL binds them. Built for
    /// either backend, since the caller's code is shared; seven vectors are
    /// nothing next to the insert itself.
    room_ids: Vec<i64>,
    seqs: Vec<i64>,
    user_ids: Vec<i64>,
    bodies: Vec<&'a str>,
    key_ids: Vec<&'a str>,
    client_ids: Vec<Option<&'a str>>,
    created_ats: Vec<NaiveDateTime>,
}

impl<'a> InsertMessages<'a> {
    pub(crate) fn new(rows: &'a [NewMessageRow<'a>]) -> InsertMessages<'a> {
        InsertMessages {
            rows,
            room_ids: rows.iter().map(|row| row.room_id).collect(),
            seqs: rows.iter().map(|row| row.seq).collect(),
            user_ids: rows.iter().map(|row| row.user_id).collect(),
            bodies: rows.iter().map(|row| row.body).collect(),
            key_ids: rows.iter().map(|row| row.key_id).collect(),
            client_ids: rows.iter().map(|row| row.client_id).collect(),
            created_ats: rows.iter().map(|row| row.created_at).collect(),
        }
    }

    fn push_head<DB: diesel::backend::Backend>(out: &mut AstPass<'_, '_, DB>) -> QueryResult<()> {
        out.push_sql("INSERT INTO ");
        messages::table.walk_ast(out.reborrow())?;
        out.push_sql(" (");
        for (index, column) in COLUMNS.into_iter().enumerate() {
            if index > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
        }
        out.push_sql(") ");
        Ok(())
    }

    fn push_returning<DB: diesel::backend::Backend>(
        out: &mut AstPass<'_, '_, DB>,
    ) -> QueryResult<()> {
        out.push_sql(" RETURNING ");
        out.push_identifier(messages::id::NAME)?;
        out.push_sql(", ");
        out.push_identifier(messages::room_id::NAME)?;
        out.push_sql(", ");
        out.push_identifier(messages::seq::NAME)?;
        Ok(())
    }
}

impl QueryId for InsertMessages<'_> {
    type QueryId = ();
    // Cached by its text where that is fixed (PostgreSQL).
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for InsertMessages<'_> {
    type SqlType = (
        SqlTypeOf<messages::id>,
        SqlTypeOf<messages::room_id>,
        SqlTypeOf<messages::seq>,
    );
}

impl QueryFragment<Pg> for InsertMessages<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Self::push_head(&mut out)?;
        out.push_sql("SELECT * FROM unnest(");
        out.push_bind_param::<Array<SqlTypeOf<messages::room_id>>, _>(&self.room_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<messages::seq>>, _>(&self.seqs)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<messages::user_id>>, _>(&self.user_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<messages::body>>, _>(&self.bodies)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<messages::key_id>>, _>(&self.key_ids)?;
        out.push_sql(", ");
        // `client_id` is `Nullable<Text>`, so the array may hold NULLs.
        out.push_bind_param::<Array<SqlTypeOf<messages::client_id>>, _>(&self.client_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<messages::created_at>>, _>(&self.created_ats)?;
        out.push_sql(")");
        Self::push_returning(&mut out)
    }
}

impl QueryFragment<Sqlite> for InsertMessages<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        // The text depends on the number of rows.
        out.unsafe_to_cache_prepared();
        Self::push_head(&mut out)?;
        out.push_sql("VALUES ");
        for (index, row) in self.rows.iter().enumerate() {
            out.push_sql(if index == 0 { "(" } else { ", (" });
            out.push_bind_param::<SqlTypeOf<messages::room_id>, _>(&row.room_id)?;
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<messages::seq>, _>(&row.seq)?;
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<messages::user_id>, _>(&row.user_id)?;
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<messages::body>, _>(row.body)?;
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<messages::key_id>, _>(row.key_id)?;
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<messages::client_id>, _>(&row.client_id)?;
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<messages::created_at>, _>(&row.created_at)?;
            out.push_sql(")");
        }
        Self::push_returning(&mut out)
    }
}
