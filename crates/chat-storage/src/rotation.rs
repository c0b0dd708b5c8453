//! Key rotation: re-encrypting stored messages under the ring's primary key,
//! a batch at a time, while the server keeps writing.
//!
//! A batch is read and re-encrypted without holding any lock, then written
//! back in one short transaction of compare-and-swap updates: a row is
//! replaced only if it still holds the token and key id that were read. A
//! row that changed in between (a concurrent writer, or a second rotation
//! process) is left as the other writer left it, so nothing is ever
//! overwritten with stale content.

use chat_crypto::KeyId;
use chat_domain::MessageId;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::schema::messages;
use crate::{StorageError, Store};

/// The most rows one [`Store::reencrypt_batch`] call handles, whatever the
/// caller asks.
pub const MAX_REENCRYPT_BATCH: i64 = 10_000;

/// What one [`Store::reencrypt_batch`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReencryptProgress {
    /// Messages looked at: those after the cursor whose key is not the
    /// primary key.
    pub scanned: usize,
    /// Messages now encrypted with the primary key.
    pub reencrypted: usize,
    /// Messages that no key of the ring decrypts. They are left exactly as
    /// they were, never destroyed; the key that opens them is missing from
    /// the ring.
    pub unreadable: Vec<MessageId>,
    /// Messages that changed between being read and being written back (a
    /// concurrent writer or another rotation got there first). They are left
    /// as that writer left them; if they are still under an old key, the next
    /// run picks them up.
    pub changed_meanwhile: usize,
    /// The cursor to pass to the next call: the highest id looked at, or the
    /// cursor given when nothing was found.
    pub last_id: Option<MessageId>,
    /// Whether the batch was not full, so no message after `last_id` needs
    /// re-encrypting (as of this call).
    pub finished: bool,
}

/// A message read for re-encryption, with its new token.
pub(crate) struct Rewrite {
    id: i64,
    old_key_id: String,
    old_body: String,
    new_body: String,
}

/// A batch read and re-encrypted, not yet written back.
pub(crate) struct Planned {
    rewrites: Vec<Rewrite>,
    progress: ReencryptProgress,
}

impl Store {
    /// Re-encrypts up to `batch_size` messages (clamped to
    /// `1..=`[`MAX_REENCRYPT_BATCH`]) whose key is not the ring's primary
    /// key, in id order, starting after `after` (`None`: from the start).
    ///
    /// Each message is decrypted with whichever key of the ring opens it and
    /// encrypted again with the primary key. The writes are compare-and-swap
    /// updates in one transaction: a message is replaced only if its token
    /// and key id are still the ones read, so a concurrent writer or a second
    /// rotation process is never overwritten. A message no key opens is
    /// reported in [`ReencryptProgress::unreadable`] and left intact.
    ///
    /// Calling this in a loop, passing each [`ReencryptProgress::last_id`]
    /// to the next call until [`ReencryptProgress::finished`], visits every
    /// message once. It is safe to stop at any point and start again from
    /// `None`: messages already under the primary key are not read again.
    pub async fn reencrypt_batch(
        &self,
        after: Option<MessageId>,
        batch_size: i64,
    ) -> Result<ReencryptProgress, StorageError> {
        let planned = self.plan_reencryption(after, batch_size).await?;
        self.apply_reencryption(planned).await
    }

    /// How many messages each key encrypted, by key id, in key id order.
    /// Keys that encrypted nothing do not appear.
    pub async fn count_by_key(&self) -> Result<Vec<(KeyId, i64)>, StorageError> {
        let counts: Vec<(String, i64)> = with_conn!(self, |conn| {
            messages::table
                .group_by(messages::key_id)
                .select((messages::key_id, diesel::dsl::count_star()))
                .order(messages::key_id.asc())
                .load(conn)
                .await?
        });
        Ok(counts
            .into_iter()
            .map(|(key_id, count)| (KeyId::new(key_id), count))
            .collect())
    }

    /// The first half of [`Store::reencrypt_batch`]: reads the batch and
    /// re-encrypts it in memory. Holds no lock and writes nothing.
    pub(crate) async fn plan_reencryption(
        &self,
        after: Option<MessageId>,
        batch_size: i64,
    ) -> Result<Planned, StorageError> {
        let limit = batch_size.clamp(1, MAX_REENCRYPT_BATCH);
        let after_id = after.map_or(0, MessageId::get);
        let keys = &self.inner.keys;
        let primary = keys.primary_id().as_str();
        let rows: Vec<(i64, String, String)> = with_conn!(self, |conn| {
            messages::table
                .filter(messages::id.gt(after_id))
                .filter(messages::key_id.ne(primary))
                .order(messages::id.asc())
                .limit(limit)
                .select((messages::id, messages::key_id, messages::body))
                .load(conn)
                .await?
        });

        let mut progress = ReencryptProgress {
            scanned: rows.len(),
            last_id: rows.last().map(|(id, _, _)| MessageId(*id)).or(after),
            finished: (rows.len() as i64) < limit,
            ..ReencryptProgress::default()
        };
        let mut rewrites = Vec::with_capacity(rows.len());
        for (id, old_key_id, old_body) in rows {
            let hint = KeyId::new(old_key_id);
            match keys.decrypt_with_hint(&old_body, Some(&hint)) {
                Ok(plaintext) => rewrites.push(Rewrite {
                    id,
                    old_key_id: hint.as_str().to_owned(),
                    old_body,
                    new_body: keys.encrypt(&plaintext).token,
                }),
                Err(error) => {
                    tracing::warn!(
                        message_id = id,
                        key_id = %hint,
                        %error,
                        "a stored message cannot be decrypted with any key of the ring; \
                         it is left as it is"
                    );
                    progress.unreadable.push(MessageId(id));
                }
            }
        }
        Ok(Planned { rewrites, progress })
    }

    /// The second half of [`Store::reencrypt_batch`]: writes the new tokens
    /// back with compare-and-swap updates, in one transaction.
    pub(crate) async fn apply_reencryption(
        &self,
        planned: Planned,
    ) -> Result<ReencryptProgress, StorageError> {
        let Planned {
            rewrites,
            mut progress,
        } = planned;
        if rewrites.is_empty() {
            return Ok(progress);
        }
        let primary = self.inner.keys.primary_id().as_str();
        let reencrypted = write_transaction!(self, |conn| {
            let mut reencrypted = 0;
            for rewrite in &rewrites {
                reencrypted += diesel::update(messages::table)
                    .filter(messages::id.eq(rewrite.id))
                    .filter(messages::key_id.eq(&rewrite.old_key_id))
                    .filter(messages::body.eq(&rewrite.old_body))
                    .set((
                        messages::body.eq(&rewrite.new_body),
                        messages::key_id.eq(primary),
                    ))
                    .execute(conn)
                    .await?;
            }
            Ok(reencrypted)
        })?;
        progress.reencrypted = reencrypted;
        progress.changed_meanwhile = rewrites.len().saturating_sub(reencrypted);
        Ok(progress)
    }
}
