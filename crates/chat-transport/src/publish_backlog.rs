//! What waits to be published to the other nodes: a bounded backlog.
//!
//! Every event this node publishes (a committed message, a membership
//! change, the end of a session, presence) waits here until the Redis
//! publisher takes it. The backlog holds at most its capacity; it absorbs a
//! burst while the link to Redis is up, and nothing while the link is down:
//! an event that cannot be published soon is not worth holding, because
//! every stored item is in the database, where the other nodes read it by
//! seq. So while the link is down, and whenever the backlog is full, an
//! event is dropped and counted, and the backlog remembers that something
//! was lost. Once the link is back, the publisher tells the other nodes to
//! catch up from the database (one small event) before it publishes
//! anything new, instead of replaying a stale burst.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::metrics::{self, Dropped};

/// The bounded queue between the fan-out and the Redis publisher.
#[derive(Debug)]
pub(crate) struct PublishBacklog {
    state: Mutex<State>,
    /// Signalled on every push; only the publisher waits here.
    ready: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    payloads: VecDeque<Vec<u8>>,
    /// Whether the publisher holds a working connection.
    linked: bool,
    /// Whether an event was dropped since the other nodes were last told
    /// to catch up.
    lost: bool,
}

impl PublishBacklog {
    /// An empty backlog of at most `capacity` events (at least one), whose
    /// link is down until the publisher connects.
    pub(crate) fn new(capacity: usize) -> PublishBacklog {
        PublishBacklog {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues an event for the other nodes; never waits. Returns `false`
    /// when it was dropped instead: the link is down or the backlog full.
    pub(crate) fn push(&self, payload: Vec<u8>) -> bool {
        let mut state = self.state();
        let dropped = if !state.linked {
            Some(Dropped::BrokerDown)
        } else if state.payloads.len() >= self.capacity {
            Some(Dropped::BacklogFull)
        } else {
            None
        };
        if let Some(reason) = dropped {
            state.lost = true;
            drop(state);
            metrics::frames_dropped(reason, 1);
            return false;
        }
        state.payloads.push_back(payload);
        drop(state);
        self.ready.notify_one();
        true
    }

    /// Moves up to `max` waiting events into `into`, oldest first, waiting
    /// for one if there are none.
    pub(crate) async fn take(&self, max: usize, into: &mut Vec<Vec<u8>>) {
        loop {
            {
                let mut state = self.state();
                if !state.payloads.is_empty() {
                    let count = state.payloads.len().min(max.max(1));
                    into.extend(state.payloads.drain(..count));
                    return;
                }
            }
            // A push between the look above and this wait leaves a permit.
            self.ready.notified().await;
        }
    }

    /// The publisher lost its connection, with `unsent` events it had
    /// taken: those and everything waiting are dropped, and so is what
    /// comes until [`PublishBacklog::link_up`].
    pub(crate) fn link_down(&self, unsent: usize) {
        let mut state = self.state();
        let dropped = state.payloads.len() + unsent;
        state.payloads.clear();
        state.payloads.shrink_to_fit();
        state.linked = false;
        state.lost |= dropped > 0;
        drop(state);
        metrics::frames_dropped(Dropped::BrokerDown, dropped);
    }

    /// The publisher has a working connection again. Returns whether
    /// anything was dropped since the other nodes were last told to catch
    /// up; the caller tells them now, and calls
    /// [`PublishBacklog::caught_up`] once that is published.
    pub(crate) fn link_up(&self) -> bool {
        let mut state = self.state();
        state.linked = true;
        state.lost
    }

    /// The other nodes were told to catch up from the database.
    pub(crate) fn caught_up(&self) {
        self.state().lost = false;
    }

    /// Whether the publisher holds a working connection.
    pub(crate) fn is_linked(&self) -> bool {
        self.state().linked
    }

    /// Events waiting to be published.
    pub(crate) fn len(&self) -> usize {
        self.state().payloads.len()
    }

    /// The most events that may wait.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_waits_while_the_link_is_down() {
        let backlog = PublishBacklog::new(4);
        assert!(!backlog.push(b"early".to_vec()));
        assert_eq!(backlog.len(), 0);
        assert!(backlog.link_up(), "the drop is remembered");
        backlog.caught_up();
        assert!(backlog.push(b"a".to_vec()));
        let mut taken = Vec::new();
        backlog.take(8, &mut taken).await;
        assert_eq!(taken, vec![b"a".to_vec()]);
        assert!(!backlog.link_up(), "nothing was lost since");
    }

    #[tokio::test]
    async fn a_full_backlog_drops_the_newest_and_keeps_the_order() {
        let backlog = PublishBacklog::new(3);
        backlog.link_up();
        for i in 0..5u8 {
            backlog.push(vec![i]);
        }
        assert_eq!(backlog.len(), 3);
        let mut taken = Vec::new();
        backlog.take(2, &mut taken).await;
        backlog.take(2, &mut taken).await;
        assert_eq!(taken, vec![vec![0], vec![1], vec![2]]);
        assert!(backlog.link_up(), "two were dropped");
    }

    #[tokio::test]
    async fn a_lost_link_empties_the_backlog() {
        let backlog = PublishBacklog::new(8);
        backlog.link_up();
        backlog.push(b"a".to_vec());
        backlog.push(b"b".to_vec());
        backlog.link_down(1);
        assert_eq!(backlog.len(), 0);
        assert!(!backlog.is_linked());
        assert!(!backlog.push(b"c".to_vec()));
        assert!(backlog.link_up());
    }
}
