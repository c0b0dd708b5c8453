//! The write path: every message from every connection goes through a
//! writer task, which commits what is waiting in one transaction (group
//! commit), then acknowledges and fans out each message in seq order.
//!
//! Nothing is acknowledged or broadcast before its transaction commits. A
//! lone message is flushed at once: the writer only batches what queued up
//! while the previous commit was in flight, so it never waits on a timer.
//!
//! There are a few writers (lanes), each owning the rooms whose id falls to
//! it, so their transactions lock disjoint room counters and commit side by
//! side instead of one after another. A room's messages all go through its
//! one lane, in the order they were sent.

use std::sync::Arc;

use chat_domain::RoomName;
use chat_protocol::ws::ErrorCode;
use chat_storage::{NewMessage, StorageError, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fanout::{Fanout, RoomEvent};
use crate::frames;
use crate::hub::{Audience, Connection, Outbound};

/// A message waiting to be stored.
#[derive(Debug)]
pub(crate) struct WriteRequest {
    pub(crate) message: NewMessage,
    pub(crate) room: RoomName,
    pub(crate) sender: Arc<Connection>,
}

/// The writer no longer takes messages (the server is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the server is shutting down")]
pub(crate) struct WriterClosed;

/// Hands messages to the writer tasks.
#[derive(Debug, Clone)]
pub(crate) struct WriterHandle {
    lanes: Arc<[mpsc::Sender<WriteRequest>]>,
}

impl WriterHandle {
    /// Queues a message with its room's lane; waits while that queue is
    /// full, which slows fast senders down instead of dropping their
    /// messages.
    pub(crate) async fn submit(&self, request: WriteRequest) -> Result<(), WriterClosed> {
        let room = request.message.room_id.get().unsigned_abs();
        let lane = usize::try_from(room % self.lanes.len() as u64).unwrap_or(0);
        self.lanes[lane]
            .send(request)
            .await
            .map_err(|_| WriterClosed)
    }
}

/// How the writers batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterConfig {
    /// Most messages in one transaction.
    pub(crate) max_batch: usize,
    /// Messages that may wait, over all lanes.
    pub(crate) queue: usize,
    /// Writers committing side by side.
    pub(crate) lanes: usize,
}

/// Starts the writers. The returned task ends once `stop` is cancelled and
/// every message queued until then is written.
pub(crate) fn spawn(
    store: &Store,
    fanout: &Arc<dyn Fanout>,
    config: WriterConfig,
    stop: &CancellationToken,
) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let lanes = config.lanes.max(1);
    let queue = (config.queue / lanes).max(1);
    let (senders, tasks): (Vec<_>, Vec<_>) = (0..lanes)
        .map(|_| {
            let (tx, rx) = mpsc::channel(queue);
            let task = tokio::spawn(run(
                rx,
                store.clone(),
                Arc::clone(fanout),
                config.max_batch.max(1),
                stop.clone(),
            ));
            (tx, task)
        })
        .unzip();
    let all = tokio::spawn(async move {
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a writer task failed");
            }
        }
    });
    (
        WriterHandle {
            lanes: senders.into(),
        },
        all,
    )
}

async fn run(
    mut rx: mpsc::Receiver<WriteRequest>,
    store: Store,
    fanout: Arc<dyn Fanout>,
    max_batch: usize,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let first = tokio::select! {
            first = rx.recv() => first,
            () = stop.cancelled() => {
                // Take no more, but write everything already queued.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit(&store, fanout.as_ref(), &mut batch).await;
    }
    tracing::debug!("writer stopped");
}

async fn commit(store: &Store, fanout: &dyn Fanout, batch: &mut Vec<WriteRequest>) {
    let messages = batch.iter().map(|r| r.message.clone()).collect();
    match store.append_messages(messages).await {
        Ok(appended) => {
            for (request, stored) in batch.drain(..).zip(appended) {
                let room = request.room.as_str();
                let ack = frames::encode(&frames::ack(room, &stored.message, stored.duplicate));
                request.sender.push(Outbound::Frame(ack));
                if stored.duplicate {
                    // The original was broadcast when it was first stored.
                    continue;
                }
                fanout.publish(RoomEvent {
                    room: stored.message.room_id,
                    seq: Some(stored.message.seq),
                    frame: frames::encode(&frames::message(room, &stored.message)),
                    audience: Audience::Everyone,
                });
            }
        }
        Err(error) => {
            tracing::warn!(
                error = %crate::error::Chain(&error),
                messages = batch.len(),
                "message batch not stored"
            );
            let (code, text) = match error {
                StorageError::Unavailable(_) => (
                    ErrorCode::Unavailable,
                    "the message was not stored: the database is unavailable; send it again",
                ),
                _ => (ErrorCode::Internal, "the message was not stored"),
            };
            for request in batch.drain(..) {
                let frame = frames::error(
                    code,
                    text,
                    request
                        .message
                        .client_id
                        .as_ref()
                        .map(|id| id.as_str().to_owned()),
                    Some(request.room.as_str().to_owned()),
                );
                request.sender.push(Outbound::Frame(frames::encode(&frame)));
            }
        }
    }
}
