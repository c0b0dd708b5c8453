//! A sharded PostgreSQL pool: each thread keeps to the connections of its
//! own shard, which it opened, so their I/O runs on it.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::thread;

use chat_storage::Store;
use chat_storage::testing::postgres_backend_pid;
use tokio::sync::oneshot;

use crate::support::TestDb;

/// A thread with a runtime of its own (as an actix-web worker has) that
/// asks for the backend behind its connection twice, reports both, and
/// keeps its runtime, and so its connections, alive until `release` is
/// dropped.
fn worker(store: Store, release: oneshot::Receiver<()>) -> (thread::JoinHandle<()>, [String; 2]) {
    let (report, reported) = mpsc::channel();
    let handle = thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut pids = [String::new(), String::new()];
            for pid in &mut pids {
                *pid = postgres_backend_pid(&store)
                    .await
                    .expect("the query runs")
                    .expect("a PostgreSQL store");
            }
            report.send(pids).expect("the test is waiting");
            // Holds the runtime, still running the connection's I/O for
            // other threads, until the test is done with every thread.
            let _ = release.await;
        });
    });
    let pids = reported.recv().expect("the thread reports");
    (handle, pids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_thread_keeps_to_its_own_shard_and_the_shards_wrap_round() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // One connection per shard: which backend answers says which shard.
    let store = db.store_sharded(&[1, 1]).await;
    let (hold_first, release_first) = oneshot::channel();
    let (hold_second, release_second) = oneshot::channel();
    let (hold_third, release_third) = oneshot::channel();
    let (first, [a1, a2]) = worker(store.clone(), release_first);
    let (second, [b1, b2]) = worker(store.clone(), release_second);
    let (third, [c1, c2]) = worker(store.clone(), release_third);
    // Each thread stays on one connection...
    assert_eq!(a1, a2);
    assert_eq!(b1, b2);
    assert_eq!(c1, c2);
    // ...the second thread's is another one, although the first thread's
    // was idle...
    assert_ne!(a1, b1);
    // ...and the third thread wraps round to the first shard.
    assert_eq!(c1, a1);
    drop((hold_first, hold_second, hold_third));
    for handle in [first, second, third] {
        handle.join().expect("the thread finishes");
    }
    // One shared pool hands an idle connection to whichever thread asks.
    let shared = db.store_sharded(&[]).await;
    let (hold, release) = oneshot::channel();
    let (hold_other, release_other) = oneshot::channel();
    let (one, [x, _]) = worker(shared.clone(), release);
    let (other, [y, _]) = worker(shared.clone(), release_other);
    assert_eq!(x, y);
    drop((hold, hold_other));
    for handle in [one, other] {
        handle.join().expect("the thread finishes");
    }
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_up_opens_connections_up_to_the_shards_size() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.store_sharded(&[3]).await;
    let before = db.connection_pids().await;
    let opened_since = |now: BTreeSet<i32>| now.difference(&before).count();
    store.warm_up(2).await.expect("connections open");
    assert_eq!(opened_since(db.connection_pids().await), 2);
    // They stay open in the pool, and no more than the shard holds are.
    store.warm_up(5).await.expect("connections open");
    assert_eq!(opened_since(db.connection_pids().await), 3);
    db.cleanup().await;
}
