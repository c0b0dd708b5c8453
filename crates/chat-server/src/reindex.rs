//! `chat-server reindex`: builds the search index for the messages stored
//! before it was written live, under the key being moved to
//! (`SEARCH_KEY_NEXT`) when there is one and under `SEARCH_KEY` otherwise;
//! and, with `--drop-old`, deletes what is left of the index under any
//! other key.
//!
//! It runs beside the servers: each step is a short transaction, and its
//! progress is kept in the database, so a stopped run continues where it
//! stopped.

use std::fmt;

use chat_storage::ReindexProgress;

use crate::settings::ReindexArgs;
use crate::{Settings, open_store};

/// Index entries deleted per statement by `--drop-old` (by term: every
/// entry of this many terms).
const DROP_TERMS_PER_STEP: usize = 2_000;

/// What a reindex run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReindexReport {
    /// The generation built.
    pub generation: i32,
    /// Whether it is the generation of `SEARCH_KEY_NEXT` (searches do not
    /// use it until that key becomes `SEARCH_KEY`).
    pub next_key: bool,
    /// Messages indexed by this run.
    pub indexed: u64,
    /// Entries of other keys deleted (`--drop-old`).
    pub dropped: u64,
}

impl fmt::Display for ReindexReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "search index {} built: {} messages indexed by this run",
            self.generation, self.indexed
        )?;
        if self.next_key {
            writeln!(
                f,
                "it belongs to SEARCH_KEY_NEXT: make that key SEARCH_KEY on every node (and \
                 unset SEARCH_KEY_NEXT), then run `chat-server reindex --drop-old`"
            )?;
        } else {
            writeln!(f, "searches use it now")?;
        }
        if self.dropped > 0 {
            writeln!(f, "{} entries of other keys deleted", self.dropped)?;
        }
        Ok(())
    }
}

/// Builds the index, calling `on_step` after each transaction, then drops
/// the other keys' entries if asked.
pub async fn reindex(
    settings: &Settings,
    args: &ReindexArgs,
    mut on_step: impl FnMut(&ReindexProgress),
) -> anyhow::Result<ReindexReport> {
    let store = open_store(settings).await?;
    let keys = store.search_keys().cloned().ok_or_else(|| {
        anyhow::anyhow!("search is off (CHAT_SEARCH=off): there is no index to build")
    })?;
    let (key, next_key) = match keys.next() {
        Some(next) => (next.clone(), true),
        None => (keys.current().clone(), false),
    };
    let batch = usize::try_from(args.batch_size).unwrap_or(1);
    let mut restart = args.restart;
    let mut indexed = 0;
    loop {
        let progress = store.reindex_step(&key, batch, restart).await?;
        restart = false;
        indexed += progress.indexed;
        on_step(&progress);
        if progress.finished {
            break;
        }
    }
    let mut dropped = 0;
    if args.drop_old {
        let keep: Vec<i32> = keys.writing().map(|key| key.generation()).collect();
        loop {
            let deleted = store
                .drop_search_generations(&keep, DROP_TERMS_PER_STEP)
                .await?;
            if deleted == 0 {
                break;
            }
            dropped += deleted;
        }
    }
    Ok(ReindexReport {
        generation: key.generation(),
        next_key,
        indexed,
        dropped,
    })
}
