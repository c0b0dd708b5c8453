//! A multi-row `INSERT ... RETURNING` into `messages` that both backends run
//! through diesel-async.
//!
//! diesel's own `insert_into(messages).values(&rows)` builds this statement
//! for PostgreSQL, but for SQLite only on the synchronous `SqliteConnection`,
//! not through diesel-async's `SyncConnectionWrapper`. This query fragment
//! spells out the same statement once, for any backend, with column names
//! and bind types taken from the schema.

use diesel::backend::Backend;
use diesel::expression::Expression;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, SqlType};

use crate::rows::NewMessageRow;
use crate::schema::messages;

type SqlTypeOf<C> = <C as Expression>::SqlType;

/// `INSERT INTO messages (room_id, seq, user_id, body, key_id, client_id,
/// created_at) VALUES (...), (...) RETURNING id, room_id, seq`.
pub(crate) struct InsertMessages<'a> {
    pub(crate) rows: &'a [NewMessageRow<'a>],
}

impl QueryId for InsertMessages<'_> {
    type QueryId = ();
    // The text depends on the number of rows.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for InsertMessages<'_> {
    type SqlType = (
        SqlTypeOf<messages::id>,
        SqlTypeOf<messages::room_id>,
        SqlTypeOf<messages::seq>,
    );
}

impl<DB> QueryFragment<DB> for InsertMessages<'_>
where
    DB: Backend
        + HasSqlType<SqlTypeOf<messages::room_id>>
        + HasSqlType<SqlTypeOf<messages::body>>
        + HasSqlType<SqlTypeOf<messages::client_id>>
        + HasSqlType<SqlTypeOf<messages::created_at>>,
    i64: ToSql<SqlTypeOf<messages::room_id>, DB>,
    str: ToSql<SqlTypeOf<messages::body>, DB>,
    for<'b> Option<&'b str>: ToSql<SqlTypeOf<messages::client_id>, DB>,
    chrono::NaiveDateTime: ToSql<SqlTypeOf<messages::created_at>, DB>,
    SqlTypeOf<messages::client_id>: SqlType,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        out.push_sql("INSERT INTO ");
        messages::table.walk_ast(out.reborrow())?;
        out.push_sql(" (");
        let columns = [
            messages::room_id::NAME,
            messages::seq::NAME,
            messages::user_id::NAME,
            messages::body::NAME,
            messages::key_id::NAME,
            messages::client_id::NAME,
            messages::created_at::NAME,
        ];
        for (index, column) in columns.into_iter().enumerate() {
            if index > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
        }
        out.push_sql(") VALUES ");
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
        out.push_sql(" RETURNING ");
        out.push_identifier(messages::id::NAME)?;
        out.push_sql(", ");
        out.push_identifier(messages::room_id::NAME)?;
        out.push_sql(", ");
        out.push_identifier(messages::seq::NAME)?;
        Ok(())
    }
}
