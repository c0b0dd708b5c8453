//! The rooms' message counters (`rooms.last_seq`): locked and advanced once
//! per batch, whatever the number of rooms in it.
//!
//! A batch of the group-commit writer may hold messages for hundreds of
//! rooms. Locking and updating each room's counter with its own statement
//! would cost two round trips per room while every counter of the batch is
//! held; here each step is one statement for the whole batch.

use std::future::Future;

use diesel::backend::Backend;
use diesel::expression::Expression;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::schema::rooms;
use crate::store::SqliteConn;

type SqlTypeOf<C> = <C as Expression>::SqlType;

/// Reads the message counters of `rooms` and holds them until the
/// transaction ends.
///
/// The one place where the backends need different SQL: PostgreSQL locks
/// the rows (`SELECT ... ORDER BY id FOR UPDATE`, which takes the locks in
/// id order, so two batches that share rooms cannot deadlock), and a
/// concurrent writer to one of them waits for this transaction to commit and
/// then reads the new value. SQLite has no row locks; its write transactions
/// begin with `BEGIN IMMEDIATE` (see `write_transaction!`), which already
/// holds the whole database's write lock.
pub(crate) trait LockRoomCounters {
    /// `(room id, last_seq)` for each of `rooms` that exists, by room id.
    fn lock_room_counters(
        &mut self,
        rooms: &[i64],
    ) -> impl Future<Output = QueryResult<Vec<(i64, i64)>>> + Send;
}

impl LockRoomCounters for AsyncPgConnection {
    async fn lock_room_counters(&mut self, ids: &[i64]) -> QueryResult<Vec<(i64, i64)>> {
        rooms::table
            .filter(rooms::id.eq_any(ids))
            .order(rooms::id)
            .select((rooms::id, rooms::last_seq))
            .for_update()
            .load(self)
            .await
    }
}

impl LockRoomCounters for SqliteConn {
    async fn lock_room_counters(&mut self, ids: &[i64]) -> QueryResult<Vec<(i64, i64)>> {
        rooms::table
            .filter(rooms::id.eq_any(ids))
            .order(rooms::id)
            .select((rooms::id, rooms::last_seq))
            .load(self)
            .await
    }
}

/// `UPDATE rooms SET last_seq = CASE id WHEN $1 THEN $2 ... END WHERE id IN
/// ($1, ...)`: sets several rooms' counters in one statement.
#[derive(Debug)]
pub(crate) struct SetRoomCounters<'a> {
    /// `(room id, new last_seq)`; must not be empty.
    pub(crate) counters: &'a [(i64, i64)],
}

impl QueryId for SetRoomCounters<'_> {
    type QueryId = ();
    // The text depends on the number of rooms.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB> QueryFragment<DB> for SetRoomCounters<'_>
where
    DB: Backend + HasSqlType<SqlTypeOf<rooms::id>>,
    i64: ToSql<SqlTypeOf<rooms::id>, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        out.push_sql("UPDATE ");
        rooms::table.walk_ast(out.reborrow())?;
        out.push_sql(" SET ");
        out.push_identifier(rooms::last_seq::NAME)?;
        out.push_sql(" = CASE ");
        out.push_identifier(rooms::id::NAME)?;
        for (room, last_seq) in self.counters {
            out.push_sql(" WHEN ");
            out.push_bind_param::<SqlTypeOf<rooms::id>, _>(room)?;
            out.push_sql(" THEN ");
            out.push_bind_param::<SqlTypeOf<rooms::last_seq>, _>(last_seq)?;
        }
        out.push_sql(" END WHERE ");
        out.push_identifier(rooms::id::NAME)?;
        out.push_sql(" IN (");
        for (index, (room, _)) in self.counters.iter().enumerate() {
            if index > 0 {
                out.push_sql(", ");
            }
            out.push_bind_param::<SqlTypeOf<rooms::id>, _>(room)?;
        }
        out.push_sql(")");
        Ok(())
    }
}
