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
//!
//! Edits and deletions of messages go through the same lanes, so a client's
//! message and its change to it are stored in the order it sent them. A
//! change is its own transaction (it reads and rewrites the message it
//! changes): the messages queued before it are committed first, then the
//! change, then those after it.

use std::sync::Arc;

use chat_domain::{ClientId, RoomId, RoomName};
use chat_protocol::ws::{ErrorCode, ServerFrame};
use chat_storage::{NewChange, NewMessage, StorageError, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fanout::{Fanout, RoomEvent};
use crate::frames;
use crate::hub::{Audience, Connection, ItemKind, Outbound};

/// What waits to be stored.
#[derive(Debug)]
pub(crate) enum Job {
    /// A new message.
    Message(NewMessage),
    /// An edit or a deletion of a stored message.
    Change(NewChange),
}

impl Job {
    fn room(&self) -> RoomId {
        match self {
            Job::Message(message) => message.room_id,
            Job::Change(change) => change.room_id,
        }
    }

    fn client_id(&self) -> Option<&ClientId> {
        match self {
            Job::Message(message) => message.client_id.as_ref(),
            Job::Change(change) => change.client_id.as_ref(),
        }
    }
}

/// A message or a change waiting to be stored.
#[derive(Debug)]
pub(crate) struct WriteRequest {
    pub(crate) job: Job,
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
        let room = request.job.room().get().unsigned_abs();
        let lane = usize::try_from(room % self.lanes.len() as u64).unwrap_or(0);
        // `reserve` then `send` rather than `send(request).await`: the
        // latter's future holds the request a second time, and this future
        // lives inside every session's per-frame future.
        let permit = self.lanes[lane].reserve().await.map_err(|_| WriterClosed)?;
        permit.send(request);
        Ok(())
    }

    /// How many requests wait for the writers now, and how many may.
    pub(crate) fn queued(&self) -> (usize, usize) {
        self.lanes.iter().fold((0, 0), |(queued, most), lane| {
            let capacity = lane.max_capacity();
            (queued + capacity - lane.capacity(), most + capacity)
        })
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

/// Commits a batch in order: runs of messages together, each change on
/// its own.
async fn commit(store: &Store, fanout: &dyn Fanout, batch: &mut Vec<WriteRequest>) {
    let mut messages: Vec<NewMessage> = Vec::with_capacity(batch.len());
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    for request in batch.drain(..) {
        // The jobs move into the store; what answers their senders stays.
        // Only the client id is copied, for the error frames of a failure.
        let reply = Reply {
            client_id: request.job.client_id().cloned(),
            room: request.room,
            sender: request.sender,
        };
        match request.job {
            Job::Message(message) => {
                messages.push(message);
                replies.push(reply);
            }
            Job::Change(change) => {
                if !messages.is_empty() {
                    commit_messages(
                        store,
                        fanout,
                        std::mem::take(&mut messages),
                        std::mem::take(&mut replies),
                    )
                    .await;
                }
                commit_change(store, fanout, change, reply).await;
            }
        }
    }
    if !messages.is_empty() {
        commit_messages(store, fanout, messages, replies).await;
    }
}

/// Stores one change, then acknowledges and publishes it.
async fn commit_change(store: &Store, fanout: &dyn Fanout, change: NewChange, reply: Reply) {
    let room = reply.room.as_str();
    let cid = || reply.client_id.clone().map(ClientId::into_string);
    let frame = match store.change_message(change).await {
        Ok(changed) => {
            // Acknowledged before it is published, as a message is.
            let mut ack = frames::ack(room, &changed.change, changed.duplicate);
            // A reaction made already is acknowledged with the change that
            // made it, under the id of the frame that asked again.
            if let (ServerFrame::Ack { client_id, .. }, Some(asked)) = (&mut ack, &reply.client_id)
            {
                *client_id = Some(asked.as_str().to_owned());
            }
            reply.sender.push(Outbound::Frame(frames::encode(&ack)));
            crate::changes::publish(fanout, room, &changed);
            return;
        }
        Err(StorageError::Refused(refusal)) => frames::refusal(&refusal, room, cid()),
        Err(StorageError::NotFound(_)) => {
            frames::refusal(&chat_domain::Refusal::RoomNotFound, room, cid())
        }
        Err(error) => {
            tracing::warn!(error = %crate::error::Chain(&error), "change not stored");
            let (code, text) = match error {
                StorageError::Unavailable(_) => (
                    ErrorCode::Unavailable,
                    "the change was not stored: the database is unavailable; send it again",
                ),
                _ => (ErrorCode::Internal, "the change was not stored"),
            };
            frames::error(code, text, cid(), Some(room.to_owned()))
        }
    };
    reply.sender.push(Outbound::Frame(frames::encode(&frame)));
}

/// Stores a run of messages in one transaction, then acknowledges and
/// publishes each, in seq order.
async fn commit_messages(
    store: &Store,
    fanout: &dyn Fanout,
    messages: Vec<NewMessage>,
    replies: Vec<Reply>,
) {
    let (started, batch) = (std::time::Instant::now(), messages.len());
    let appended = store.append_messages(messages).await;
    crate::metrics::commit(batch, started.elapsed());
    match appended {
        Ok(appended) => {
            for (reply, stored) in replies.into_iter().zip(appended) {
                let room = reply.room.as_str();
                let stored = match stored {
                    Ok(stored) => stored,
                    Err(refusal) => {
                        // Not a member in good standing now: not stored.
                        let frame = frames::refusal(
                            &refusal,
                            room,
                            reply.client_id.map(ClientId::into_string),
                        );
                        reply.sender.push(Outbound::Frame(frames::encode(&frame)));
                        continue;
                    }
                };
                let ack = frames::encode(&frames::ack(room, &stored.message, stored.duplicate));
                reply.sender.push(Outbound::Frame(ack));
                if stored.duplicate {
                    // The original was broadcast when it was first stored.
                    continue;
                }
                crate::metrics::message_committed();
                fanout.publish(RoomEvent {
                    room: stored.message.room_id,
                    seq: Some(stored.message.seq),
                    frame: frames::encode(&frames::message(room, &stored.message)),
                    audience: Audience::Everyone,
                    kind: ItemKind::Message,
                });
            }
        }
        Err(error) => {
            tracing::warn!(
                error = %crate::error::Chain(&error),
                messages = replies.len(),
                "message batch not stored"
            );
            let (code, text) = match error {
                StorageError::Unavailable(_) => (
                    ErrorCode::Unavailable,
                    "the message was not stored: the database is unavailable; send it again",
                ),
                _ => (ErrorCode::Internal, "the message was not stored"),
            };
            for reply in replies {
                let frame = frames::error(
                    code,
                    text,
                    reply.client_id.map(ClientId::into_string),
                    Some(reply.room.as_str().to_owned()),
                );
                reply.sender.push(Outbound::Frame(frames::encode(&frame)));
            }
        }
    }
}

/// Whom to answer for one message of a batch, and how.
struct Reply {
    client_id: Option<ClientId>,
    room: RoomName,
    sender: Arc<Connection>,
}
