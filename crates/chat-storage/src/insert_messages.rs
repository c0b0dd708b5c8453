//! The multi-row `INSERT ... SELECT ... RETURNING` into `messages` of a
//! batch, run through diesel-async on both backends: it stores the messages
//! whose authors may post in their rooms now, numbers them, and leaves the
//! others out, in one statement.
//!
//! The write path's membership check lives here so that it costs no round
//! trip of its own. The statement runs after the batch has locked its
//! rooms' counters, and membership changes lock the same row, so the check
//! sees every change committed before the batch: a message that raced a
//! kick, a ban or a mute is not stored. Because a left-out message takes no
//! seq, the statement numbers the stored ones itself: each row carries its
//! room's last seq before the statement (`base`), and its seq is `base`
//! plus its rank, in input order, among its room's stored rows.
//!
//! diesel's own `insert_into(messages).values(&rows)` builds a multi-row
//! statement for PostgreSQL, but for SQLite only on the synchronous
//! `SqliteConnection`, not through diesel-async's `SyncConnectionWrapper`,
//! and neither filters nor numbers. So this query is spelled out here, once
//! per backend:
//!
//! - PostgreSQL takes each column as one array and selects from `unnest ...
//!   WITH ORDINALITY`, probing `room_members`' primary key once per row
//!   (a lateral sub-select with `LIMIT 1`, so no generic plan can turn it
//!   into a scan). The text is the same whatever the number of rows, so it
//!   is prepared once per connection, and a batch of 1,000 messages is 10
//!   bind parameters rather than 10,000.
//! - SQLite, which has no arrays, gets one `VALUES` tuple per row, its
//!   position first, in a common table expression.
//!
//! Column names and bind types come from the schema.

use chrono::NaiveDateTime;
use diesel::expression::Expression;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, Timestamp};
use diesel::sqlite::Sqlite;

use crate::rows::NewMessageRow;
use crate::schema::{messages, room_members};

type SqlTypeOf<C> = <C as Expression>::SqlType;

/// The inserted columns, in statement order.
const COLUMNS: [&str; 9] = [
    messages::room_id::NAME,
    messages::seq::NAME,
    messages::user_id::NAME,
    messages::body::NAME,
    messages::key_id::NAME,
    messages::client_id::NAME,
    messages::created_at::NAME,
    messages::reply_to::NAME,
    messages::mls::NAME,
];

/// The input relation's columns: a row's position, then its values with
/// `base` (the room's last seq) in place of `seq`.
const INPUT: [&str; 10] = [
    "ord",
    messages::room_id::NAME,
    "base",
    messages::user_id::NAME,
    messages::body::NAME,
    messages::key_id::NAME,
    messages::client_id::NAME,
    messages::created_at::NAME,
    messages::reply_to::NAME,
    messages::mls::NAME,
];

/// `INSERT INTO messages (room_id, seq, user_id, body, key_id, client_id,
/// created_at, reply_to) SELECT ... RETURNING id, room_id, seq, user_id`, storing the
/// rows whose author is a member of the room and not muted at `now`.
pub(crate) struct InsertMessages<'a> {
    /// The rows, as SQLite binds them.
    rows: &'a [NewMessageRow<'a>],
    /// When a mute must have ended for its member to post.
    now: NaiveDateTime,
    /// The same rows column by column, as PostgreSQL binds them. Built for
    /// either backend, since the caller's code is shared; these vectors are
    /// nothing next to the insert itself.
    room_ids: Vec<i64>,
    bases: Vec<i64>,
    user_ids: Vec<i64>,
    bodies: Vec<&'a str>,
    key_ids: Vec<&'a str>,
    client_ids: Vec<Option<&'a str>>,
    created_ats: Vec<NaiveDateTime>,
    reply_tos: Vec<Option<i64>>,
    mls: Vec<Option<&'a str>>,
}

impl<'a> InsertMessages<'a> {
    pub(crate) fn new(rows: &'a [NewMessageRow<'a>], now: NaiveDateTime) -> InsertMessages<'a> {
        InsertMessages {
            rows,
            now,
            room_ids: rows.iter().map(|row| row.room_id).collect(),
            bases: rows.iter().map(|row| row.base).collect(),
            user_ids: rows.iter().map(|row| row.user_id).collect(),
            bodies: rows.iter().map(|row| row.body).collect(),
            key_ids: rows.iter().map(|row| row.key_id).collect(),
            client_ids: rows.iter().map(|row| row.client_id).collect(),
            created_ats: rows.iter().map(|row| row.created_at).collect(),
            reply_tos: rows.iter().map(|row| row.reply_to).collect(),
            mls: rows.iter().map(|row| row.mls).collect(),
        }
    }

    /// `INSERT INTO messages (...) SELECT v.room_id, v.base + row_number()
    /// OVER (PARTITION BY v.room_id ORDER BY v.ord), v.user_id, ... FROM `
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
        out.push_sql(") SELECT ");
        for (index, column) in COLUMNS.into_iter().enumerate() {
            if index > 0 {
                out.push_sql(", ");
            }
            if column == messages::seq::NAME {
                out.push_sql("v.base + row_number() OVER (PARTITION BY v.");
                out.push_identifier(messages::room_id::NAME)?;
                out.push_sql(" ORDER BY v.ord)");
            } else {
                out.push_sql("v.");
                out.push_identifier(column)?;
            }
        }
        out.push_sql(" FROM ");
        Ok(())
    }

    /// `v(ord, room_id, base, ...)`
    fn push_input_columns<DB: diesel::backend::Backend>(
        out: &mut AstPass<'_, '_, DB>,
    ) -> QueryResult<()> {
        out.push_sql("v(");
        for (index, column) in INPUT.into_iter().enumerate() {
            if index > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
        }
        out.push_sql(")");
        Ok(())
    }

    /// `m.room_id = v.room_id AND m.user_id = v.user_id`
    fn push_member_of_row<DB: diesel::backend::Backend>(
        out: &mut AstPass<'_, '_, DB>,
    ) -> QueryResult<()> {
        for (index, column) in [room_members::room_id::NAME, room_members::user_id::NAME]
            .into_iter()
            .enumerate()
        {
            out.push_sql(if index == 0 { "m." } else { " AND m." });
            out.push_identifier(column)?;
            out.push_sql(" = v.");
            out.push_identifier(column)?;
        }
        Ok(())
    }

    fn push_returning<DB: diesel::backend::Backend>(
        out: &mut AstPass<'_, '_, DB>,
    ) -> QueryResult<()> {
        out.push_sql(" RETURNING ");
        for (index, column) in [
            messages::id::NAME,
            messages::room_id::NAME,
            messages::seq::NAME,
            messages::user_id::NAME,
        ]
        .into_iter()
        .enumerate()
        {
            if index > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
        }
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
        SqlTypeOf<messages::user_id>,
    );
}

impl QueryFragment<Pg> for InsertMessages<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Self::push_head(&mut out)?;
        out.push_sql("unnest(");
        out.push_bind_param::<Array<SqlTypeOf<messages::room_id>>, _>(&self.room_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<messages::seq>>, _>(&self.bases)?;
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
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<messages::reply_to>>, _>(&self.reply_tos)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<messages::mls>>, _>(&self.mls)?;
        // The position comes last from `WITH ORDINALITY`; the alias lists
        // the columns in unnest's order.
        out.push_sql(") WITH ORDINALITY AS v(");
        for (index, column) in INPUT[1..].iter().chain(&INPUT[..1]).enumerate() {
            if index > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
        }
        out.push_sql(") CROSS JOIN LATERAL (SELECT m.");
        out.push_identifier(room_members::muted_until::NAME)?;
        out.push_sql(" FROM ");
        room_members::table.walk_ast(out.reborrow())?;
        out.push_sql(" AS m WHERE ");
        Self::push_member_of_row(&mut out)?;
        out.push_sql(" LIMIT 1) AS m WHERE m.");
        out.push_identifier(room_members::muted_until::NAME)?;
        out.push_sql(" IS NULL OR m.");
        out.push_identifier(room_members::muted_until::NAME)?;
        out.push_sql(" <= ");
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        Self::push_returning(&mut out)
    }
}

impl QueryFragment<Sqlite> for InsertMessages<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        // The text depends on the number of rows.
        out.unsafe_to_cache_prepared();
        out.push_sql("WITH ");
        Self::push_input_columns(&mut out)?;
        out.push_sql(" AS (VALUES ");
        for (ord, row) in (0_i64..).zip(self.rows) {
            out.push_sql(if ord == 0 { "(" } else { ", (" });
            out.push_sql(&ord.to_string());
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<messages::room_id>, _>(&row.room_id)?;
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<messages::seq>, _>(&row.base)?;
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
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<messages::reply_to>, _>(&row.reply_to)?;
            out.push_sql(", ");
            out.push_bind_param::<SqlTypeOf<messages::mls>, _>(&row.mls)?;
            out.push_sql(")");
        }
        out.push_sql(") ");
        Self::push_head(&mut out)?;
        // Times are compared as instants, not as text.
        out.push_sql("v WHERE EXISTS (SELECT 1 FROM ");
        room_members::table.walk_ast(out.reborrow())?;
        out.push_sql(" AS m WHERE ");
        Self::push_member_of_row(&mut out)?;
        out.push_sql(" AND (m.");
        out.push_identifier(room_members::muted_until::NAME)?;
        out.push_sql(" IS NULL OR julianday(m.");
        out.push_identifier(room_members::muted_until::NAME)?;
        out.push_sql(") <= julianday(");
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(")))");
        Self::push_returning(&mut out)
    }
}
