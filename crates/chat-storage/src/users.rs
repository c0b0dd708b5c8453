use chat_domain::{RoomName, UserId, Username};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::model::User;
use crate::rows::{UserRow, now};
use crate::schema::{room_members, rooms, users};
use crate::{StorageError, Store};

diesel::define_sql_function! {
    /// SQL `lower(text)`; both backends fold ASCII, all a username may hold.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

impl Store {
    /// Registers a user and makes them a member of `general`.
    ///
    /// Fails with [`StorageError::Conflict`] when the name is taken, ignoring
    /// case: the database's unique index on `lower(username)` decides, so
    /// two concurrent sign-ups for `Alice` and `alice` cannot both succeed.
    pub async fn create_user(
        &self,
        username: &Username,
        password_hash: &str,
    ) -> Result<User, StorageError> {
        let created_at = now();
        let general = RoomName::general();
        let row = write_transaction!(self, |conn| {
            let row: UserRow = diesel::insert_into(users::table)
                .values((
                    users::username.eq(username.as_str()),
                    users::password_hash.eq(password_hash),
                    users::created_at.eq(created_at),
                ))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await
                .map_err(|error| StorageError::from(error).conflict_as("username is taken"))?;
            let general_id: i64 = rooms::table
                .filter(rooms::name.eq(general.as_str()))
                .select(rooms::id)
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| StorageError::NotFound("the general room".to_owned()))?;
            diesel::insert_into(room_members::table)
                .values((
                    room_members::room_id.eq(general_id),
                    room_members::user_id.eq(row.id),
                    room_members::joined_at.eq(created_at),
                ))
                .execute(conn)
                .await?;
            Ok(row)
        })?;
        User::try_from(row)
    }

    /// The user with this name, ignoring case.
    pub async fn user_by_name(&self, username: &Username) -> Result<Option<User>, StorageError> {
        let normalized = username.normalized();
        let row: Option<UserRow> = with_conn!(self, |conn| {
            users::table
                .filter(lower(users::username).eq(&normalized))
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()?
        });
        row.map(User::try_from).transpose()
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StorageError> {
        let row: Option<UserRow> = with_conn!(self, |conn| {
            users::table
                .find(id.get())
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()?
        });
        row.map(User::try_from).transpose()
    }
}
