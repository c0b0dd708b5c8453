//! The rooms' message counters (`rooms.last_seq`): locked and advanced once
//! per batch, whatever the number of rooms in it.
//!
//! A batch of the group-commit writer may hold messages for hundreds of
//! rooms. Locking and updating each room's counter with its own statement
//! would cost two round trips per room while every counter of the batch is
//! held; here each step is one statement for the whole batch.

use std::future::Future;

use diesel::expression::Expression;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::Array;
use diesel::sqlite::Sqlite;
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

/// Sets several rooms' counters in one statement.
///
/// PostgreSQL: `UPDATE rooms SET last_seq = c.last_seq FROM unnest($1, $2)
/// AS c(id, last_seq) WHERE rooms.id = c.id`, one text whatever the number
/// of rooms, so it is prepared once per connection. SQLite, which has no
/// arrays: `UPDATE rooms SET last_seq = CASE id WHEN $1 THEN $2 ... END
/// WHERE id IN ($1, ...)`.
#[derive(Debug)]
pub(crate) struct SetRoomCounters<'a> {
    /// `(room id, new last_seq)`; must not be empty.
    counters: &'a [(i64, i64)],
    /// The same, column by column, for PostgreSQL's arrays (built for
    /// either backend, since the caller's code is shared).
    rooms: Vec<i64>,
    last_seqs: Vec<i64>,
}

impl<'a> SetRoomCounters<'a> {
    pub(crate) fn new(counters: &'a [(i64, i64)]) -> SetRoomCounters<'a> {
        SetRoomCounters {
            counters,
            rooms: counters.iter().map(|&(room, _)| room).collect(),
            last_seqs: counters.iter().map(|&(_, last_seq)| last_seq).collect(),
        }
    }
}

impl QueryId for SetRoomCounters<'_> {
    type QueryId = ();
    // Cached by its text where that is fixed (PostgreSQL).
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for SetRoomCounters<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE ");
        rooms::table.walk_ast(out.reborrow())?;
        out.push_sql(" SET ");
        out.push_identifier(rooms::last_seq::NAME)?;
        out.push_sql(" = c.");
        out.push_identifier(rooms::last_seq::NAME)?;
        out.push_sql(" FROM unnest(");
        out.push_bind_param::<Array<SqlTypeOf<rooms::id>>, _>(&self.rooms)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlTypeOf<rooms::last_seq>>, _>(&self.last_seqs)?;
        out.push_sql(") AS c(");
        out.push_identifier(rooms::id::NAME)?;
        out.push_sql(", ");
        out.push_identifier(rooms::last_seq::NAME)?;
        out.push_sql(") WHERE ");
        rooms::table.walk_ast(out.reborrow())?;
        out.push_sql(".");
        out.push_identifier(rooms::id::NAME)?;
        out.push_sql(" = c.");
        out.push_identifier(rooms::id::NAME)?;
        Ok(())
    }
}

impl QueryFragment<Sqlite> for SetRoomCounters<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        // The text depends on the number of rooms.
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
