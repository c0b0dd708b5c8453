//! PostgreSQL's pool, split into one shard per thread that uses the store.
//!
//! A PostgreSQL connection does its socket I/O in a task that runs on the
//! thread that opened it. A caller on another thread pays for every round
//! trip twice over: its request wakes that thread, and the answer wakes the
//! caller's thread back. On a server whose HTTP workers each run their own
//! single-threaded runtime, and share one pool, that is half the requests.
//!
//! So each thread that uses the store is given a shard (the first thread
//! shard 0, the next one shard 1, and so on, wrapping round) and only ever
//! checks connections out of it: every connection it uses was opened on
//! it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use deadpool::managed::Pool;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;

pub(crate) type PgPool = Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

/// The shards of one store's PostgreSQL pool.
pub(crate) struct PgPools {
    /// Tells this store's entries apart in every thread's table.
    id: u64,
    shards: Box<[PgPool]>,
    /// The shard the next new thread gets.
    next: AtomicUsize,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// `(store id, shard)` for each sharded store this thread has used.
    static ASSIGNED: RefCell<Vec<(u64, usize)>> = const { RefCell::new(Vec::new()) };
}

impl PgPools {
    /// `shards` must not be empty.
    pub(crate) fn new(shards: Vec<PgPool>) -> PgPools {
        assert!(!shards.is_empty(), "a pool needs at least one shard");
        PgPools {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shards: shards.into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }

    /// Every shard, in order.
    pub(crate) fn shards(&self) -> &[PgPool] {
        &self.shards
    }

    /// The calling thread's shard.
    pub(crate) fn local(&self) -> &PgPool {
        if self.shards.len() == 1 {
            return &self.shards[0];
        }
        let shard = ASSIGNED.with(|assigned| {
            let mut assigned = assigned.borrow_mut();
            if let Some(&(_, shard)) = assigned.iter().find(|(id, _)| *id == self.id) {
                return shard;
            }
            let shard = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
            assigned.push((self.id, shard));
            shard
        });
        &self.shards[shard]
    }
}

impl Drop for PgPools {
    fn drop(&mut self) {
        // Only this thread's entry can be removed; the others are a few
        // bytes each, in threads that used a store that is now gone.
        let id = self.id;
        let _ = ASSIGNED.try_with(|assigned| {
            if let Ok(mut assigned) = assigned.try_borrow_mut() {
                assigned.retain(|(store, _)| *store != id);
            }
        });
    }
}
