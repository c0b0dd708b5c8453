//! `chat-server rotate-key`: re-encrypts every stored message with the
//! primary key (`ENCRYPTION_KEY`), then says which keys of
//! `ENCRYPTION_KEYS_PREVIOUS` no message needs any more.
//!
//! It never removes a key itself: the operator does, from the
//! configuration, once the report says no message is left under it.

use std::fmt;

use anyhow::Context;
use chat_crypto::KeyId;
use chat_domain::MessageId;
use chat_storage::ReencryptProgress;

use crate::{Settings, open_store_with, secrets};

/// How many unreadable message ids the report lists before it stops.
const UNREADABLE_SHOWN: usize = 20;

/// What a rotation run did and what it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// The id of `ENCRYPTION_KEY`, which every message should end up under.
    pub primary: KeyId,
    /// Messages re-encrypted by this run.
    pub reencrypted: usize,
    /// Messages another writer changed while this run was re-encrypting
    /// them; they were left as that writer left them.
    pub changed_meanwhile: usize,
    /// Messages no configured key decrypts, left untouched.
    pub unreadable: Vec<MessageId>,
    /// Messages under the primary key after the run.
    pub under_primary: i64,
    /// Each entry of `ENCRYPTION_KEYS_PREVIOUS`, in order, with the messages
    /// still under it.
    pub previous: Vec<PreviousKey>,
    /// Keys that messages name but that are not configured, with their
    /// message counts: those messages cannot be read until the key is added
    /// to `ENCRYPTION_KEYS_PREVIOUS`.
    pub unknown: Vec<(KeyId, i64)>,
}

/// One entry of `ENCRYPTION_KEYS_PREVIOUS` after a rotation run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousKey {
    /// Its position in `ENCRYPTION_KEYS_PREVIOUS`, from 1.
    pub entry: usize,
    /// Its fingerprint, as stored beside each message.
    pub key_id: KeyId,
    /// Messages still encrypted with it.
    pub remaining: i64,
}

impl PreviousKey {
    /// Whether no message needs this key any more, so it can be removed
    /// from the configuration.
    pub fn can_be_dropped(&self) -> bool {
        self.remaining == 0
    }
}

impl RotationReport {
    /// Whether every message is now under the primary key.
    pub fn is_complete(&self) -> bool {
        self.previous.iter().all(PreviousKey::can_be_dropped) && self.unknown.is_empty()
    }
}

/// Re-encrypts every message that is not under the primary key, in batches
/// of `batch_size`, calling `on_batch` after each batch; then counts what is
/// left under each key.
///
/// Meant to run while servers serve, after every server was restarted with
/// the new `ENCRYPTION_KEY` and the old key in `ENCRYPTION_KEYS_PREVIOUS`.
/// Each batch is its own short transaction of compare-and-swap updates, so
/// it never overwrites a message a server changed meanwhile. Stopping it
/// loses nothing; running it again continues with what is left.
pub async fn rotate_keys(
    settings: &Settings,
    batch_size: i64,
    mut on_batch: impl FnMut(&ReencryptProgress),
) -> anyhow::Result<RotationReport> {
    let keys = secrets::key_ring(settings)?;
    let previous_keys = secrets::previous_keys(settings)?;
    let primary = keys.primary_id().clone();
    let store = open_store_with(settings, keys).await?;

    let mut reencrypted = 0;
    let mut changed_meanwhile = 0;
    let mut unreadable = Vec::new();
    let mut after = None;
    loop {
        let progress = store.reencrypt_batch(after, batch_size).await.context(
            "re-encrypting a batch failed; run `chat-server rotate-key` again to resume",
        )?;
        reencrypted += progress.reencrypted;
        changed_meanwhile += progress.changed_meanwhile;
        unreadable.extend_from_slice(&progress.unreadable);
        on_batch(&progress);
        after = progress.last_id;
        if progress.finished {
            break;
        }
    }

    let mut counts = store
        .count_by_key()
        .await
        .context("could not count the messages under each key")?;
    let count_of = |key_id: &KeyId| {
        counts
            .iter()
            .find(|(id, _)| id == key_id)
            .map_or(0, |(_, count)| *count)
    };
    let under_primary = count_of(&primary);
    let previous: Vec<PreviousKey> = previous_keys
        .iter()
        .enumerate()
        // An entry that repeats the primary key is the primary key.
        .filter(|(_, key)| *key.id() != primary)
        .map(|(index, key)| PreviousKey {
            entry: index + 1,
            key_id: key.id().clone(),
            remaining: count_of(key.id()),
        })
        .collect();
    counts.retain(|(id, _)| {
        *id != primary && !previous.iter().any(|previous| previous.key_id == *id)
    });

    Ok(RotationReport {
        primary,
        reencrypted,
        changed_meanwhile,
        unreadable,
        under_primary,
        previous,
        unknown: counts,
    })
}

impl fmt::Display for RotationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "re-encrypted {} with ENCRYPTION_KEY (key id {}); {} under it now",
            messages(self.reencrypted),
            self.primary,
            messages(self.under_primary)
        )?;
        if self.changed_meanwhile > 0 {
            writeln!(
                f,
                "{} changed while being re-encrypted and were left as their writer left \
                 them; run `chat-server rotate-key` again to pick up any still under an old key",
                messages(self.changed_meanwhile)
            )?;
        }
        if !self.unreadable.is_empty() {
            let shown: Vec<String> = self
                .unreadable
                .iter()
                .take(UNREADABLE_SHOWN)
                .map(|id| id.get().to_string())
                .collect();
            let more = if self.unreadable.len() > UNREADABLE_SHOWN {
                ", …"
            } else {
                ""
            };
            writeln!(
                f,
                "{} cannot be decrypted with any configured key and were left untouched \
                 (ids {}{more})",
                messages(self.unreadable.len()),
                shown.join(", ")
            )?;
        }

        for key in &self.previous {
            writeln!(
                f,
                "ENCRYPTION_KEYS_PREVIOUS entry {} (key id {}): {} remaining",
                key.entry,
                key.key_id,
                messages(key.remaining)
            )?;
        }
        for (key_id, count) in &self.unknown {
            writeln!(
                f,
                "key id {key_id} is not configured: {} remaining under it cannot be read; \
                 add that key to ENCRYPTION_KEYS_PREVIOUS and run again",
                messages(*count)
            )?;
        }

        let droppable: Vec<String> = self
            .previous
            .iter()
            .filter(|key| key.can_be_dropped())
            .map(|key| format!("entry {} (key id {})", key.entry, key.key_id))
            .collect();
        if self.previous.is_empty() {
            writeln!(
                f,
                "ENCRYPTION_KEYS_PREVIOUS is empty: there is no previous key to drop"
            )?;
        } else if droppable.is_empty() {
            writeln!(
                f,
                "no key of ENCRYPTION_KEYS_PREVIOUS can be dropped yet: keep every key that \
                 still has messages"
            )?;
        } else {
            writeln!(
                f,
                "no message needs these keys any more; remove them from \
                 ENCRYPTION_KEYS_PREVIOUS and restart the servers: {}",
                droppable.join(", ")
            )?;
        }
        Ok(())
    }
}

/// "1 message", "2 messages".
fn messages<N: fmt::Display + PartialEq + From<u8>>(count: N) -> String {
    if count == N::from(1) {
        "1 message".to_owned()
    } else {
        format!("{count} messages")
    }
}
