//! The directory of end-to-end encryption: users' devices and the MLS
//! KeyPackages they publish so that others can add them to a group.
//!
//! Everything here is public material (credentials, signature public keys,
//! KeyPackages), checked by the caller before it is stored; this module
//! keeps it and hands it out. A claim takes an ordinary package for good,
//! so no package is handed out twice, even to claims running at once on
//! several servers: on PostgreSQL the claim deletes the oldest package no
//! other claim has locked (`FOR UPDATE SKIP LOCKED`); SQLite has one
//! writer at a time. When a device has no ordinary package left, the claim
//! hands out its last-resort package, which stays.

use chat_domain::e2e::{DeviceId, MAX_DEVICES_PER_USER, MAX_KEY_PACKAGES_PER_DEVICE, MlsKind};
use chat_domain::{MessageBody, Refusal, RoomId, RoomName, UserId, Username};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Bool, Timestamp};
use diesel_async::RunQueryDsl;

use crate::model::Message;
use crate::room_counters::LockRoomCounters;
use crate::rows::{now, username, utc};
use crate::schema::{
    mls_devices, mls_groups, mls_key_packages, mls_package_refs, mls_welcomes, room_members, rooms,
    users,
};
use crate::sequence::{Recorded, SequenceItem};
use crate::store::Pools;
use crate::{StorageError, Store};

/// Locks the row of user `$id` for the transaction (PostgreSQL; SQLite's
/// write transaction holds the whole database) and returns its id, or
/// `None` when there is no such user.
macro_rules! lock_user {
    ($conn:expr, $postgres:expr, $id:expr) => {{
        let sql = if $postgres {
            "SELECT id FROM users WHERE id = $1 FOR UPDATE"
        } else {
            "SELECT id FROM users WHERE id = $1"
        };
        let found: Option<UserRowId> = diesel::sql_query(sql)
            .bind::<BigInt, _>($id)
            .get_result(&mut *$conn)
            .await
            .optional()?;
        found.map(|row| row.id)
    }};
}

/// The row id of a user's device, or [`StorageError::NotFound`].
macro_rules! device_row_id {
    ($conn:expr, $user:expr, $device_id:expr) => {{
        let id: Option<i64> = mls_devices::table
            .filter(mls_devices::user_id.eq($user.get()))
            .filter(mls_devices::device_id.eq($device_id.as_str()))
            .select(mls_devices::id)
            .first(&mut *$conn)
            .await
            .optional()?;
        id.ok_or_else(|| StorageError::NotFound(format!("device '{}'", $device_id)))
    }};
}

/// How many unexpired packages device `$device` has at `$at`.
macro_rules! stock_of {
    ($conn:expr, $device:expr, $at:expr) => {{
        let counts: Vec<(bool, i64)> = mls_key_packages::table
            .filter(mls_key_packages::device.eq($device))
            .filter(mls_key_packages::not_after.gt($at))
            .group_by(mls_key_packages::last_resort)
            .select((mls_key_packages::last_resort, diesel::dsl::count_star()))
            .load(&mut *$conn)
            .await?;
        let mut stock = KeyPackageStock {
            available: 0,
            last_resort: false,
        };
        for (last_resort, count) in counts {
            if last_resort {
                stock.last_resort = count > 0;
            } else {
                stock.available = usize::try_from(count).unwrap_or(0);
            }
        }
        stock
    }};
}

/// A user's id, as [`lock_user!`] reads it.
#[derive(QueryableByName)]
struct UserRowId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub user_id: UserId,
    pub device_id: DeviceId,
    /// The TLS encoding of its MLS credential.
    pub credential: Vec<u8>,
    /// Its signature public key.
    pub signature_key: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// A device of a room's member, as [`Store::room_devices`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDevice {
    /// The member the device belongs to.
    pub username: Username,
    /// The device, as registered.
    pub device: Device,
}

/// A KeyPackage to store, checked by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeyPackage {
    /// The TLS encoding of the KeyPackage.
    pub bytes: Vec<u8>,
    /// Its reference (RFC 9420, section 5.2), by which a Welcome names it.
    pub reference: Vec<u8>,
    /// The end of its lifetime.
    pub not_after: DateTime<Utc>,
}

/// How many packages a device has waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPackageStock {
    /// Unexpired ordinary packages.
    pub available: usize,
    /// Whether an unexpired last-resort package is stored.
    pub last_resort: bool,
}

/// A package handed out by a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKeyPackage {
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub key_package: Vec<u8>,
    /// The device's last-resort package (it had no ordinary one left).
    pub last_resort: bool,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = mls_devices)]
struct DeviceRow {
    id: i64,
    user_id: i64,
    device_id: String,
    credential: Vec<u8>,
    signature_key: Vec<u8>,
    created_at: NaiveDateTime,
}

impl TryFrom<DeviceRow> for Device {
    type Error = StorageError;

    fn try_from(row: DeviceRow) -> Result<Device, StorageError> {
        let device_id = DeviceId::parse(row.device_id)
            .map_err(|error| StorageError::Corrupt(format!("device {}: {error}", row.id)))?;
        Ok(Device {
            user_id: UserId(row.user_id),
            device_id,
            credential: row.credential,
            signature_key: row.signature_key,
            created_at: utc(row.created_at),
        })
    }
}

/// A package taken by a claim.
#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = Binary)]
    key_package: Vec<u8>,
    #[diesel(sql_type = Bool)]
    last_resort: bool,
}

/// Deletes and returns the oldest unexpired ordinary package of a device
/// (`$1`, at `$2`), skipping packages another claim holds on PostgreSQL.
fn take_one_sql(postgres: bool) -> String {
    format!(
        "DELETE FROM mls_key_packages WHERE id = (\
         SELECT id FROM mls_key_packages \
         WHERE device = $1 AND NOT last_resort AND not_after > $2 \
         ORDER BY id LIMIT 1{}) \
         RETURNING key_package, last_resort",
        if postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    )
}

impl Store {
    /// Registers `device_id` for `user` with its credential and signature
    /// key, or returns it unchanged when it is registered with that key
    /// already. Registering it again with another key replaces the key and
    /// drops the packages made with the old one (a reinstalled client).
    ///
    /// Fails with [`StorageError::Conflict`] when the user has
    /// [`MAX_DEVICES_PER_USER`] devices, and with [`StorageError::NotFound`]
    /// when there is no such user.
    pub async fn register_device(
        &self,
        user: UserId,
        device_id: &DeviceId,
        credential: &[u8],
        signature_key: &[u8],
    ) -> Result<Device, StorageError> {
        let at = now();
        let postgres = matches!(self.inner.pools, Pools::Postgres(_));
        let row = write_transaction!(self, |conn| {
            // The user's row is the lock that orders registrations of one
            // user, so the device limit holds under concurrent requests.
            let locked: Option<i64> = lock_user!(conn, postgres, user.get());
            if locked.is_none() {
                return Err(StorageError::NotFound(format!("user {user}")));
            }
            let existing: Option<DeviceRow> = mls_devices::table
                .filter(mls_devices::user_id.eq(user.get()))
                .filter(mls_devices::device_id.eq(device_id.as_str()))
                .select(DeviceRow::as_select())
                .first(conn)
                .await
                .optional()?;
            match existing {
                Some(row) if row.signature_key == signature_key && row.credential == credential => {
                    Ok(row)
                }
                Some(row) => {
                    diesel::delete(
                        mls_key_packages::table.filter(mls_key_packages::device.eq(row.id)),
                    )
                    .execute(conn)
                    .await?;
                    let row: DeviceRow = diesel::update(mls_devices::table.find(row.id))
                        .set((
                            mls_devices::credential.eq(credential),
                            mls_devices::signature_key.eq(signature_key),
                            mls_devices::created_at.eq(at),
                        ))
                        .returning(DeviceRow::as_returning())
                        .get_result(conn)
                        .await?;
                    Ok(row)
                }
                None => {
                    let devices: i64 = mls_devices::table
                        .filter(mls_devices::user_id.eq(user.get()))
                        .count()
                        .get_result(conn)
                        .await?;
                    if usize::try_from(devices).unwrap_or(usize::MAX) >= MAX_DEVICES_PER_USER {
                        return Err(StorageError::Conflict(format!(
                            "a user has at most {MAX_DEVICES_PER_USER} devices; remove one first"
                        )));
                    }
                    let row: DeviceRow = diesel::insert_into(mls_devices::table)
                        .values((
                            mls_devices::user_id.eq(user.get()),
                            mls_devices::device_id.eq(device_id.as_str()),
                            mls_devices::credential.eq(credential),
                            mls_devices::signature_key.eq(signature_key),
                            mls_devices::created_at.eq(at),
                        ))
                        .returning(DeviceRow::as_returning())
                        .get_result(conn)
                        .await?;
                    Ok(row)
                }
            }
        })?;
        Device::try_from(row)
    }

    /// The devices of `user`, oldest first.
    pub async fn devices_of(&self, user: UserId) -> Result<Vec<Device>, StorageError> {
        let rows: Vec<DeviceRow> = with_conn!(self, |conn| {
            mls_devices::table
                .filter(mls_devices::user_id.eq(user.get()))
                .order(mls_devices::id)
                .select(DeviceRow::as_select())
                .load(conn)
                .await?
        });
        rows.into_iter().map(Device::try_from).collect()
    }

    /// Every device of every current member of `room` whose account is
    /// not deleted, by the members' names, then each member's devices
    /// oldest first: what a client of an encrypted room compares with its
    /// group to add a member's new device or remove a deleted one.
    pub async fn room_devices(&self, room: RoomId) -> Result<Vec<MemberDevice>, StorageError> {
        let rows: Vec<(String, DeviceRow)> = with_conn!(self, |conn| {
            room_members::table
                .inner_join(users::table)
                .inner_join(mls_devices::table.on(mls_devices::user_id.eq(room_members::user_id)))
                .filter(room_members::room_id.eq(room.get()))
                .filter(users::deleted_at.is_null())
                .order((
                    users::username.asc(),
                    mls_devices::created_at.asc(),
                    mls_devices::id.asc(),
                ))
                .select((users::username, DeviceRow::as_select()))
                .load(conn)
                .await?
        });
        rows.into_iter()
            .map(|(name, row)| {
                Ok(MemberDevice {
                    username: username(name)?,
                    device: Device::try_from(row)?,
                })
            })
            .collect()
    }

    /// The device `device_id` of `user`, if registered.
    pub async fn device(
        &self,
        user: UserId,
        device_id: &DeviceId,
    ) -> Result<Option<Device>, StorageError> {
        let row: Option<DeviceRow> = with_conn!(self, |conn| {
            mls_devices::table
                .filter(mls_devices::user_id.eq(user.get()))
                .filter(mls_devices::device_id.eq(device_id.as_str()))
                .select(DeviceRow::as_select())
                .first(conn)
                .await
                .optional()?
        });
        row.map(Device::try_from).transpose()
    }

    /// Removes a device and every package it published; returns whether
    /// it was registered.
    pub async fn remove_device(
        &self,
        user: UserId,
        device_id: &DeviceId,
    ) -> Result<bool, StorageError> {
        let removed = write_transaction!(self, |conn| {
            let id: Option<i64> = mls_devices::table
                .filter(mls_devices::user_id.eq(user.get()))
                .filter(mls_devices::device_id.eq(device_id.as_str()))
                .select(mls_devices::id)
                .first(conn)
                .await
                .optional()?;
            let Some(id) = id else {
                return Ok(false);
            };
            diesel::delete(mls_key_packages::table.filter(mls_key_packages::device.eq(id)))
                .execute(conn)
                .await?;
            diesel::delete(mls_devices::table.find(id))
                .execute(conn)
                .await?;
            Ok(true)
        })?;
        Ok(removed)
    }

    /// Stores `packages` for a device, and `last_resort` as its
    /// last-resort package in place of the one before. Expired packages of
    /// the device go at the same time.
    ///
    /// Fails with [`StorageError::NotFound`] when the device is not
    /// registered, and with [`StorageError::Conflict`], storing nothing,
    /// when the device would hold more than
    /// [`MAX_KEY_PACKAGES_PER_DEVICE`] ordinary packages.
    pub async fn add_key_packages(
        &self,
        user: UserId,
        device_id: &DeviceId,
        packages: &[NewKeyPackage],
        last_resort: Option<&NewKeyPackage>,
    ) -> Result<KeyPackageStock, StorageError> {
        let at = now();
        let stock = write_transaction!(self, |conn| {
            let device = device_row_id!(conn, user, device_id)?;
            diesel::delete(
                mls_key_packages::table
                    .filter(mls_key_packages::device.eq(device))
                    .filter(mls_key_packages::not_after.le(at)),
            )
            .execute(conn)
            .await?;
            for package in packages.iter().chain(last_resort) {
                diesel::insert_into(mls_package_refs::table)
                    .values((
                        mls_package_refs::ref_.eq(&package.reference),
                        mls_package_refs::device.eq(device),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
            }
            // A new last-resort package replaces the one before.
            if last_resort.is_some() {
                diesel::delete(
                    mls_key_packages::table
                        .filter(mls_key_packages::device.eq(device))
                        .filter(mls_key_packages::last_resort.eq(true)),
                )
                .execute(conn)
                .await?;
            }
            let stored = packages
                .iter()
                .map(|package| (package, false))
                .chain(last_resort.map(|package| (package, true)));
            for (package, is_last_resort) in stored {
                diesel::insert_into(mls_key_packages::table)
                    .values((
                        mls_key_packages::device.eq(device),
                        mls_key_packages::key_package.eq(&package.bytes),
                        mls_key_packages::last_resort.eq(is_last_resort),
                        mls_key_packages::not_after.eq(package.not_after.naive_utc()),
                        mls_key_packages::created_at.eq(at),
                    ))
                    .execute(conn)
                    .await?;
            }
            let stock = stock_of!(conn, device, at);
            if stock.available > MAX_KEY_PACKAGES_PER_DEVICE {
                return Err(StorageError::Conflict(format!(
                    "a device holds at most {MAX_KEY_PACKAGES_PER_DEVICE} unclaimed KeyPackages \
                     ({} with this upload)",
                    stock.available
                )));
            }
            Ok(stock)
        })?;
        Ok(stock)
    }

    /// How many packages the device has waiting.
    pub async fn key_package_stock(
        &self,
        user: UserId,
        device_id: &DeviceId,
    ) -> Result<KeyPackageStock, StorageError> {
        let at = now();
        let stock = with_conn!(self, |conn| {
            let device = device_row_id!(conn, user, device_id)?;
            stock_of!(conn, device, at)
        });
        Ok(stock)
    }

    /// One package for every device of each of `users`: an ordinary one,
    /// taken for good, or the last-resort one when none is left. A device
    /// with neither (never uploaded, or everything expired) is left out.
    ///
    /// With `devices`, only the devices of `users` with one of those ids
    /// are claimed (a client adding a member's new device, not all of
    /// them); an id that names no device of theirs claims nothing.
    pub async fn claim_key_packages(
        &self,
        users: &[UserId],
        devices: Option<&[DeviceId]>,
    ) -> Result<Vec<ClaimedKeyPackage>, StorageError> {
        let at = now();
        let postgres = matches!(self.inner.pools, Pools::Postgres(_));
        let sql = take_one_sql(postgres);
        let ids: Vec<i64> = users.iter().map(|user| user.get()).collect();
        let claimed = write_transaction!(self, |conn| {
            let mut found: Vec<(i64, i64, String)> = mls_devices::table
                .inner_join(users::table)
                .filter(mls_devices::user_id.eq_any(&ids))
                .filter(users::deleted_at.is_null())
                .order((mls_devices::user_id, mls_devices::id))
                .select((
                    mls_devices::id,
                    mls_devices::user_id,
                    mls_devices::device_id,
                ))
                .load(conn)
                .await?;
            if let Some(wanted) = devices {
                found.retain(|(_, _, device_id)| {
                    wanted.iter().any(|id| id.as_str() == device_id.as_str())
                });
            }
            let mut claimed = Vec::with_capacity(found.len());
            for (device, user_id, device_id) in found {
                let taken: Option<Taken> = diesel::sql_query(sql.as_str())
                    .bind::<BigInt, _>(device)
                    .bind::<Timestamp, _>(at)
                    .get_result(conn)
                    .await
                    .optional()?;
                let taken = match taken {
                    Some(taken) => Some(taken),
                    None => mls_key_packages::table
                        .filter(mls_key_packages::device.eq(device))
                        .filter(mls_key_packages::last_resort.eq(true))
                        .filter(mls_key_packages::not_after.gt(at))
                        .select((mls_key_packages::key_package, mls_key_packages::last_resort))
                        .first::<(Vec<u8>, bool)>(conn)
                        .await
                        .optional()?
                        .map(|(key_package, last_resort)| Taken {
                            key_package,
                            last_resort,
                        }),
                };
                let Some(taken) = taken else {
                    continue;
                };
                let device_id = DeviceId::parse(device_id)
                    .map_err(|error| StorageError::Corrupt(format!("device {device}: {error}")))?;
                claimed.push(ClaimedKeyPackage {
                    user_id: UserId(user_id),
                    device_id,
                    key_package: taken.key_package,
                    last_resort: taken.last_resort,
                });
            }
            Ok(claimed)
        })?;
        Ok(claimed)
    }
}

/// A commit to store in an encrypted room's sequence, checked by the
/// caller against the room's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommit {
    pub room_id: RoomId,
    pub user_id: UserId,
    /// The epoch the commit builds on: it is stored only if the group is
    /// there now.
    pub epoch: u64,
    /// The MLS group's id: a room has one group for good.
    pub group_id: Vec<u8>,
    /// The commit (an MLS public message), as base64 text.
    pub commit: MessageBody,
    /// The GroupInfo after the commit, handed out with the Welcome.
    pub group_info: Vec<u8>,
    /// The group's public state after the commit, as the caller keeps it
    /// to check the next commit (opaque here).
    pub public_state: Vec<u8>,
    /// The Welcome for the devices the commit adds, and the references of
    /// the KeyPackages it was made for.
    pub welcome: Option<(Vec<u8>, Vec<Vec<u8>>)>,
}

/// Where an encrypted room's group stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlsGroup {
    pub group_id: Vec<u8>,
    /// The epoch the next commit must build on.
    pub epoch: u64,
    /// The group's public state after the last commit accepted, as
    /// [`NewCommit::public_state`] gave it.
    pub public_state: Vec<u8>,
}

/// A Welcome waiting for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWelcome {
    pub id: i64,
    pub room: RoomName,
    pub welcome: Vec<u8>,
    pub group_info: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
}

fn epoch_of(value: i64) -> Result<u64, StorageError> {
    u64::try_from(value).map_err(|_| StorageError::Corrupt(format!("negative epoch {value}")))
}

impl Store {
    /// Where the group of `room` stands, or `None` before its first commit
    /// (the creator's group is at epoch 0 then).
    pub async fn mls_group(&self, room: RoomId) -> Result<Option<MlsGroup>, StorageError> {
        // The column is named for what it held first, the GroupInfo of the
        // last commit; it holds the public state the caller keeps, which
        // may still be such a GroupInfo in a group without a commit since.
        let row: Option<(Vec<u8>, i64, Vec<u8>)> = with_conn!(self, |conn| {
            mls_groups::table
                .find(room.get())
                .select((
                    mls_groups::group_id,
                    mls_groups::epoch,
                    mls_groups::group_info,
                ))
                .first(conn)
                .await
                .optional()?
        });
        row.map(|(group_id, epoch, public_state)| {
            Ok(MlsGroup {
                group_id,
                epoch: epoch_of(epoch)?,
                public_state,
            })
        })
        .transpose()
    }

    /// Stores a commit at the next seq of its room, if the group is at the
    /// commit's epoch (compare-and-swap under the room's lock, in the
    /// transaction that numbers it), moves the group to the next epoch,
    /// and keeps the Welcome for each device it adds. Returns the stored
    /// commit as a message.
    ///
    /// Refused, changing nothing, with [`Refusal::StaleEpoch`] when another
    /// commit was accepted on that epoch first, [`Refusal::NotAMember`]
    /// when the author is not a member, and [`Refusal::Conflict`] when the
    /// room's group has another id or the room is not encrypted.
    pub async fn append_commit(&self, commit: NewCommit) -> Result<Message, StorageError> {
        let room = commit.room_id.get();
        let actor = commit.user_id.get();
        let sealed = self.inner.keys.encrypt(commit.commit.as_str());
        let at = now();
        let epoch = i64::try_from(commit.epoch)
            .map_err(|_| StorageError::Refused(Refusal::StaleEpoch { current: 0 }))?;
        let row = write_transaction!(self, |conn| {
            let Some((_, last_seq)) = conn.lock_room_counters(&[room]).await?.into_iter().next()
            else {
                return Err(StorageError::NotFound(format!("room {room}")));
            };
            let encrypted: bool = rooms::table
                .find(room)
                .select(rooms::encrypted)
                .first(conn)
                .await?;
            if !encrypted {
                return Err(StorageError::Refused(Refusal::Conflict(
                    "the room is not end-to-end encrypted",
                )));
            }
            let member: Option<i64> = room_members::table
                .find((room, actor))
                .select(room_members::user_id)
                .first(conn)
                .await
                .optional()?;
            if member.is_none() {
                return Err(StorageError::Refused(Refusal::NotAMember));
            }
            let group: Option<(Vec<u8>, i64)> = mls_groups::table
                .find(room)
                .select((mls_groups::group_id, mls_groups::epoch))
                .first(conn)
                .await
                .optional()?;
            let current = group.as_ref().map_or(0, |(_, epoch)| *epoch);
            if let Some((group_id, _)) = &group
                && *group_id != commit.group_id
            {
                return Err(StorageError::Refused(Refusal::Conflict(
                    "the commit is for another group than the room's",
                )));
            }
            if current != epoch {
                return Err(StorageError::Refused(Refusal::StaleEpoch {
                    current: epoch_of(current)?,
                }));
            }
            let item = SequenceItem {
                room,
                seq: last_seq + 1,
                user_id: actor,
                body: &sealed.token,
                key_id: sealed.key_id.as_str(),
                client_id: None,
                created_at: at,
                recorded: Recorded::Mls(MlsKind::Commit.as_str()),
            };
            let row = record_in_sequence!(conn, &item);
            diesel::delete(mls_groups::table.find(room))
                .execute(conn)
                .await?;
            diesel::insert_into(mls_groups::table)
                .values((
                    mls_groups::room_id.eq(room),
                    mls_groups::group_id.eq(&commit.group_id),
                    mls_groups::epoch.eq(epoch + 1),
                    mls_groups::group_info.eq(&commit.public_state),
                    mls_groups::updated_at.eq(at),
                ))
                .execute(conn)
                .await?;
            if let Some((welcome, refs)) = &commit.welcome {
                let mut devices: Vec<i64> = mls_package_refs::table
                    .filter(mls_package_refs::ref_.eq_any(refs))
                    .select(mls_package_refs::device)
                    .load(conn)
                    .await?;
                devices.sort_unstable();
                devices.dedup();
                for device in devices {
                    diesel::insert_into(mls_welcomes::table)
                        .values((
                            mls_welcomes::device.eq(device),
                            mls_welcomes::room_id.eq(room),
                            mls_welcomes::welcome.eq(welcome),
                            mls_welcomes::group_info.eq(Some(&commit.group_info)),
                            mls_welcomes::created_at.eq(at),
                        ))
                        .execute(conn)
                        .await?;
                }
            }
            Ok(row)
        })?;
        // The room's newest page in memory no longer holds.
        self.inner.recent.forget(room);
        self.open(row)
    }

    /// The Welcomes waiting for a device of `user`, oldest first.
    pub async fn welcomes_for(
        &self,
        user: UserId,
        device_id: &DeviceId,
    ) -> Result<Vec<PendingWelcome>, StorageError> {
        type Row = (i64, String, Vec<u8>, Option<Vec<u8>>, NaiveDateTime);
        let rows: Vec<Row> = with_conn!(self, |conn| {
            let device = device_row_id!(conn, user, device_id)?;
            mls_welcomes::table
                .inner_join(rooms::table)
                .filter(mls_welcomes::device.eq(device))
                .order(mls_welcomes::id)
                .select((
                    mls_welcomes::id,
                    rooms::name,
                    mls_welcomes::welcome,
                    mls_welcomes::group_info,
                    mls_welcomes::created_at,
                ))
                .load(conn)
                .await?
        });
        rows.into_iter()
            .map(|(id, room, welcome, group_info, created_at)| {
                Ok(PendingWelcome {
                    id,
                    room: RoomName::parse(&room)
                        .map_err(|error| StorageError::Corrupt(format!("welcome {id}: {error}")))?,
                    welcome,
                    group_info,
                    created_at: utc(created_at),
                })
            })
            .collect()
    }

    /// Drops a Welcome a device of `user` has processed; returns whether
    /// there was one.
    pub async fn acknowledge_welcome(
        &self,
        user: UserId,
        device_id: &DeviceId,
        id: i64,
    ) -> Result<bool, StorageError> {
        let deleted = with_conn!(self, |conn| {
            let device = device_row_id!(conn, user, device_id)?;
            diesel::delete(
                mls_welcomes::table
                    .filter(mls_welcomes::id.eq(id))
                    .filter(mls_welcomes::device.eq(device)),
            )
            .execute(conn)
            .await?
        });
        Ok(deleted > 0)
    }
}
