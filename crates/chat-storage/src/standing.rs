//! Why the authors of a batch whose messages the insert left out may not
//! post (see [`crate::insert_messages`], which checks): their memberships,
//! one statement for all of them. Run only when the insert left some out.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Nullable, Timestamp};
use diesel::sqlite::Sqlite;

use crate::schema::room_members;

/// `(room_id, user_id, muted_until)` of the memberships among `pairs`
/// (room id, user id); a pair with no row is not a member.
///
/// PostgreSQL joins the primary key to two bound arrays (`unnest`), one
/// text whatever the number of pairs; SQLite probes it with a list of row
/// values. Either way, one index probe per pair.
#[derive(Debug)]
pub(crate) struct StandingOf {
    rooms: Vec<i64>,
    users: Vec<i64>,
}

impl StandingOf {
    pub(crate) fn new(pairs: &[(i64, i64)]) -> StandingOf {
        StandingOf {
            rooms: pairs.iter().map(|&(room, _)| room).collect(),
            users: pairs.iter().map(|&(_, user)| user).collect(),
        }
    }

    fn push_columns<DB: diesel::backend::Backend>(
        out: &mut AstPass<'_, '_, DB>,
        table: &str,
    ) -> QueryResult<()> {
        for (index, column) in [
            room_members::room_id::NAME,
            room_members::user_id::NAME,
            room_members::muted_until::NAME,
        ]
        .into_iter()
        .enumerate()
        {
            out.push_sql(if index == 0 { "SELECT " } else { ", " });
            out.push_sql(table);
            out.push_sql(".");
            out.push_identifier(column)?;
        }
        Ok(())
    }
}

impl QueryId for StandingOf {
    type QueryId = ();
    // SQLite's text depends on the number of pairs.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for StandingOf {
    type SqlType = (BigInt, BigInt, Nullable<Timestamp>);
}

impl QueryFragment<Pg> for StandingOf {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // A lateral probe per pair, like the resend look-up: a generic plan
        // made while the table is small cannot turn it into a scan.
        Self::push_columns(&mut out, "m")?;
        out.push_sql(" FROM unnest(");
        out.push_bind_param::<Array<BigInt>, _>(&self.rooms)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.users)?;
        out.push_sql(") AS k(room_id, user_id) CROSS JOIN LATERAL (SELECT * FROM room_members");
        out.push_sql(
            " WHERE room_members.room_id = k.room_id AND room_members.user_id = k.user_id",
        );
        out.push_sql(" LIMIT 1) AS m");
        Ok(())
    }
}

impl QueryFragment<Sqlite> for StandingOf {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        Self::push_columns(&mut out, "room_members")?;
        out.push_sql(" FROM room_members WHERE (room_id, user_id) IN (VALUES ");
        for (index, (room, user)) in self.rooms.iter().zip(&self.users).enumerate() {
            out.push_sql(if index == 0 { "(" } else { ", (" });
            out.push_bind_param::<BigInt, _>(room)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(user)?;
            out.push_sql(")");
        }
        out.push_sql(")");
        Ok(())
    }
}
