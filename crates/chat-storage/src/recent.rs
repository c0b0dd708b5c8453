//! The newest messages of the rooms read lately, kept decrypted in memory.
//!
//! Opening a room asks for its newest page, by far the most common history
//! request. From the database that page costs an index scan, a join for the
//! authors' names and decrypting every message; from here it costs reading
//! the room's `last_seq`, one row by primary key.
//!
//! Why that is safe with several processes writing: a room's seqs run 1, 2,
//! 3... without gaps, and a committed message never changes (re-encryption
//! under a new key changes its ciphertext, not its text). A run of
//! consecutive messages, once read, therefore stays true. What another
//! process can change is only where the room ends, and `last_seq` says where
//! that is: when the cached run reaches it, the run holds the newest page;
//! when it does not, the page comes from the database and replaces the run.
//! Whoever adds edits or deletions of messages must update or drop the run
//! of the room they touch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::model::{Message, Page};

/// How much of each room's newest history the store keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentCache {
    /// Messages kept per room: the largest newest page served from memory.
    /// 0 turns the cache off.
    pub per_room: usize,
    /// Roughly how many bytes all rooms together may take; past it the
    /// rooms read longest ago are dropped.
    pub max_bytes: usize,
}

impl RecentCache {
    /// No cache: every page is read from the database.
    pub const OFF: RecentCache = RecentCache {
        per_room: 0,
        max_bytes: 0,
    };
}

impl Default for RecentCache {
    /// 100 messages per room (twice the usual page), 64 MiB in all.
    fn default() -> RecentCache {
        RecentCache {
            per_room: 100,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The cache itself, one per [`crate::Store`].
#[derive(Debug)]
pub(crate) struct RecentMessages {
    limits: RecentCache,
    rooms: Mutex<Rooms>,
}

#[derive(Debug, Default)]
struct Rooms {
    by_room: HashMap<i64, Run>,
    /// Sum of the runs' `bytes`.
    bytes: usize,
    /// Ticks on every read, to find the room read longest ago.
    clock: u64,
}

/// Consecutive messages of one room ending at the newest this process knows
/// of; oldest first.
#[derive(Debug, Default)]
struct Run {
    messages: VecDeque<Arc<Message>>,
    bytes: usize,
    used: u64,
}

impl Run {
    fn newest_seq(&self) -> Option<i64> {
        self.messages.back().map(|message| message.seq.get())
    }

    fn push(&mut self, message: Arc<Message>, per_room: usize) {
        self.bytes += footprint(&message);
        self.messages.push_back(message);
        while self.messages.len() > per_room {
            if let Some(oldest) = self.messages.pop_front() {
                self.bytes -= footprint(&oldest);
            }
        }
    }
}

/// What one cached message takes, near enough for a memory budget.
fn footprint(message: &Message) -> usize {
    std::mem::size_of::<Message>()
        + 2 * std::mem::size_of::<usize>() // the Arc's counts
        + std::mem::size_of::<Arc<Message>>() // the queue's slot
        + message.username.as_str().len()
        + message.content.as_ref().map_or(0, String::len)
        + message.client_id.as_ref().map_or(0, |id| id.as_str().len())
}

impl RecentMessages {
    pub(crate) fn new(limits: RecentCache) -> RecentMessages {
        RecentMessages {
            limits,
            rooms: Mutex::new(Rooms::default()),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.limits.per_room > 0 && self.limits.max_bytes > 0
    }

    fn lock(&self) -> MutexGuard<'_, Rooms> {
        // Every change below leaves the map consistent before anything that
        // could panic, so a poisoned lock still guards sound data.
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The newest `limit` messages of `room`, if memory holds them, given
    /// that the database's newest seq of the room is `last_seq` (at least 1).
    pub(crate) fn newest(&self, room: i64, last_seq: i64, limit: usize) -> Option<Page> {
        let picked: Vec<Arc<Message>> = {
            let mut rooms = self.lock();
            rooms.clock += 1;
            let now = rooms.clock;
            let run = rooms.by_room.get_mut(&room)?;
            let newest = run.newest_seq()?;
            if newest < last_seq {
                // Another process committed newer messages.
                return None;
            }
            // Seqs start at 1 without gaps: the room holds `newest` messages.
            let wanted = limit.min(usize::try_from(newest).ok()?);
            if run.messages.len() < wanted {
                return None;
            }
            run.used = now;
            let start = run.messages.len() - wanted;
            run.messages.range(start..).cloned().collect()
        };
        let has_more = picked.first().is_some_and(|oldest| oldest.seq.get() > 1);
        let messages = picked
            .iter()
            .map(|message| Message::clone(message))
            .collect();
        Some(Page { messages, has_more })
    }

    /// Keeps a newest page just read from the database (ascending seqs) as
    /// `room`'s run, unless memory already holds as recent a run.
    pub(crate) fn remember(&self, room: i64, page: &[Message]) {
        if !self.enabled() || !consecutive(page) {
            return;
        }
        let Some(newest) = page.last().map(|message| message.seq.get()) else {
            return;
        };
        let mut rooms = self.lock();
        if let Some(run) = rooms.by_room.get(&room) {
            let keeps = run.newest_seq().is_some_and(|known| known > newest)
                || (run.newest_seq() == Some(newest) && run.messages.len() >= page.len());
            if keeps {
                return;
            }
        }
        let mut run = Run::default();
        let skip = page.len().saturating_sub(self.limits.per_room);
        for message in &page[skip..] {
            run.push(Arc::new(message.clone()), self.limits.per_room);
        }
        rooms.clock += 1;
        run.used = rooms.clock;
        rooms.bytes += run.bytes;
        if let Some(old) = rooms.by_room.insert(room, run) {
            rooms.bytes -= old.bytes;
        }
        self.evict(&mut rooms, room);
    }

    /// Adds messages this process has just committed (each room's in
    /// ascending seq) to the runs of their rooms. A room whose run does not
    /// end right before them lost track (another process wrote in between):
    /// its run is dropped, and the next read fills it again.
    pub(crate) fn extend<'a>(&self, committed: impl IntoIterator<Item = &'a Message>) {
        if !self.enabled() {
            return;
        }
        let mut rooms = self.lock();
        if rooms.by_room.is_empty() {
            return;
        }
        let mut grown = false;
        for message in committed {
            let room = message.room_id.get();
            let Some(run) = rooms.by_room.get_mut(&room) else {
                continue;
            };
            let seq = message.seq.get();
            match run.newest_seq() {
                Some(newest) if seq == newest + 1 => {
                    let before = run.bytes;
                    run.push(Arc::new(message.clone()), self.limits.per_room);
                    let after = run.bytes;
                    rooms.bytes = rooms.bytes + after - before;
                    grown = true;
                }
                // A read from the database already brought it in.
                Some(newest) if seq <= newest => {}
                _ => {
                    if let Some(run) = rooms.by_room.remove(&room) {
                        rooms.bytes -= run.bytes;
                    }
                }
            }
        }
        if grown {
            self.evict(&mut rooms, i64::MIN);
        }
    }

    /// Drops `room`'s run: a message in it changed (an edit, a deletion or
    /// an erasure), and the next read fills it again from the database.
    pub(crate) fn forget(&self, room: i64) {
        let mut rooms = self.lock();
        if let Some(run) = rooms.by_room.remove(&room) {
            rooms.bytes -= run.bytes;
        }
    }

    /// Drops the rooms read longest ago, other than `keep`, until the runs
    /// fit the budget.
    fn evict(&self, rooms: &mut Rooms, keep: i64) {
        while rooms.bytes > self.limits.max_bytes {
            let oldest = rooms
                .by_room
                .iter()
                .filter(|(room, _)| **room != keep)
                .min_by_key(|(_, run)| run.used)
                .map(|(room, _)| *room);
            let Some(oldest) = oldest else {
                break;
            };
            if let Some(run) = rooms.by_room.remove(&oldest) {
                rooms.bytes -= run.bytes;
            }
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// Whether `page` is in ascending seq order without gaps.
fn consecutive(page: &[Message]) -> bool {
    page.windows(2)
        .all(|pair| pair[1].seq.get() == pair[0].seq.get() + 1)
}

#[cfg(test)]
mod tests {
    use chat_domain::{MessageId, RoomId, Seq, UserId, Username};
    use chrono::Utc;

    use super::*;

    fn message(room: i64, seq: i64) -> Message {
        Message {
            id: MessageId(room * 1_000_000 + seq),
            room_id: RoomId(room),
            seq: Seq::new(seq).expect("a valid seq"),
            user_id: UserId(1),
            username: Username::parse("alice".to_owned()).expect("a valid name"),
            content: Some(format!("message {seq}")),
            client_id: None,
            created_at: Utc::now(),
            edited_at: None,
            deleted_at: None,
            deleted_by: None,
            reply_to: None,
            change: None,
            event: None,
            reactions: 0,
            mls: None,
        }
    }

    fn run(room: i64, seqs: std::ops::RangeInclusive<i64>) -> Vec<Message> {
        seqs.map(|seq| message(room, seq)).collect()
    }

    fn seqs(page: &Page) -> Vec<i64> {
        page.messages
            .iter()
            .map(|message| message.seq.get())
            .collect()
    }

    fn cache(per_room: usize) -> RecentMessages {
        RecentMessages::new(RecentCache {
            per_room,
            max_bytes: usize::MAX,
        })
    }

    #[test]
    fn a_remembered_page_serves_the_newest_messages_while_the_room_ends_there() {
        let recent = cache(100);
        recent.remember(7, &run(7, 51..=100));

        let page = recent.newest(7, 100, 20).expect("served from memory");
        assert_eq!(seqs(&page), (81..=100).collect::<Vec<_>>());
        assert!(page.has_more);
        assert!(recent.newest(7, 100, 51).is_none(), "only 50 are known");
        assert!(
            recent.newest(7, 101, 20).is_none(),
            "the room grew elsewhere"
        );
        assert!(recent.newest(8, 100, 20).is_none(), "another room");
    }

    #[test]
    fn a_short_room_is_served_whole_without_more() {
        let recent = cache(100);
        recent.remember(7, &run(7, 1..=3));
        let page = recent.newest(7, 3, 50).expect("the whole room is known");
        assert_eq!(seqs(&page), vec![1, 2, 3]);
        assert!(!page.has_more);
    }

    #[test]
    fn committed_messages_extend_a_run_and_the_oldest_fall_off() {
        let recent = cache(5);
        recent.remember(7, &run(7, 1..=5));
        recent.extend(&run(7, 6..=8));
        let page = recent.newest(7, 8, 5).expect("served from memory");
        assert_eq!(seqs(&page), vec![4, 5, 6, 7, 8]);
        assert!(recent.newest(7, 8, 6).is_none(), "5 per room");
    }

    #[test]
    fn a_gap_drops_the_run_and_rooms_not_read_are_not_kept() {
        let recent = cache(100);
        recent.remember(7, &run(7, 1..=5));
        // Seq 6 was committed by another process.
        recent.extend(&run(7, 7..=7));
        recent.extend(&run(9, 1..=3));
        assert!(recent.newest(7, 7, 1).is_none());
        assert!(recent.newest(9, 3, 1).is_none());
        assert_eq!(recent.bytes(), 0);
    }

    #[test]
    fn an_older_page_does_not_replace_a_newer_run() {
        let recent = cache(100);
        recent.remember(7, &run(7, 1..=10));
        recent.remember(7, &run(7, 1..=8));
        assert_eq!(seqs(&recent.newest(7, 10, 2).expect("kept")), vec![9, 10]);
    }

    #[test]
    fn a_page_with_a_gap_is_not_kept() {
        let recent = cache(100);
        let mut page = run(7, 1..=4);
        page.remove(2);
        recent.remember(7, &page);
        assert!(recent.newest(7, 4, 1).is_none());
    }

    #[test]
    fn past_the_budget_the_room_read_longest_ago_goes() {
        let one_room = {
            let probe = cache(100);
            probe.remember(1, &run(1, 1..=10));
            probe.bytes()
        };
        let recent = RecentMessages::new(RecentCache {
            per_room: 100,
            max_bytes: 2 * one_room,
        });
        recent.remember(1, &run(1, 1..=10));
        recent.remember(2, &run(2, 1..=10));
        assert!(recent.newest(1, 10, 1).is_some(), "room 1 is read again");
        recent.remember(3, &run(3, 1..=10));

        assert!(recent.newest(1, 10, 1).is_some());
        assert!(recent.newest(2, 10, 1).is_none(), "read longest ago");
        assert!(recent.newest(3, 10, 1).is_some());
        assert!(recent.bytes() <= 2 * one_room);
    }

    #[test]
    fn switched_off_it_keeps_nothing() {
        let recent = RecentMessages::new(RecentCache::OFF);
        recent.remember(7, &run(7, 1..=5));
        assert!(recent.newest(7, 5, 1).is_none());
    }
}
